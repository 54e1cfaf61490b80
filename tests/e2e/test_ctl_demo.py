#!/usr/bin/env python3
"""quickstart's store step (demo.d/10-store.sh) run twice into a scratch
folder (never /work/main/demo): it makes the configuration, the domain and
an account of every class with working passwords kept only in a 0600 env
file, and the second run changes nothing."""
import hashlib
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, TOP_SRCDIR  # noqa: E402
from ctlenv import GOVMAILCTL  # noqa: E402

t = Suite()
demo = os.path.join(t.tmp, "demo")
os.makedirs(demo, mode=0o700)
step = os.path.join(TOP_SRCDIR, "demo.d", "10-store.sh")
DOMAIN = "demo.gov.example"
SCRIPT = """set -euo pipefail
say() { printf 'quickstart: %s\\n' "$*"; }
demo=$1 top=$2 GOVMAIL_DOMAIN=$3
. "$4"
"""


def run_step():
    return t.run(["bash", "-c", SCRIPT, "step", demo, TOP_SRCDIR, DOMAIN,
                  step], env={"GOVMAILCTL": GOVMAILCTL}, timeout=120)


def snapshot():
    """Every file's path, mode and content hash, store files excepted
    (Berkeley DB touches its region files when it opens)."""
    out = {}
    for root, _, files in os.walk(demo):
        if os.path.join(demo, "store") in root:
            continue
        for fn in files:
            path = os.path.join(root, fn)
            st = os.stat(path)
            with open(path, "rb") as f:
                out[os.path.relpath(path, demo)] = (
                    stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                    hashlib.sha256(f.read()).hexdigest())
    return out


def env_file():
    vals = {}
    with open(os.path.join(demo, "env.d", "10-store.env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            vals[k] = v
    return vals


def ctl(*args, input=None):
    return t.run([GOVMAILCTL, "-c", os.path.join(demo, "govmail.conf")]
                 + list(args), input=input)


def first_run(t):
    p = run_step()
    t.ok(p.returncode == 0, "the store step runs", p.stdout + p.stderr)
    t.ok(os.path.isfile(os.path.join(demo, "govmail.conf")),
         "demo/govmail.conf written")
    store = os.path.join(demo, "store")
    t.ok(os.path.isdir(store) and len(os.listdir(store)) > 0,
         "the store is under demo/store (the relative path)")
    envf = os.path.join(demo, "env.d", "10-store.env")
    t.eq(stat.S_IMODE(os.stat(envf).st_mode), 0o600, "env file mode 0600")
    vals = env_file()
    for role, cls in (("CITIZEN", "citizen"), ("OFFICIAL", "official"),
                      ("LEGAL", "legal-person"),
                      ("DEPARTMENT", "department")):
        user = vals.get(f"GOVMAIL_{role}_USER", "")
        pw = vals.get(f"GOVMAIL_{role}_PASS", "")
        t.ok(user.endswith("@" + DOMAIN) and len(pw) >= 16,
             f"GOVMAIL_{role}_USER/_PASS present", vals)
        p = ctl("user", "show", user)
        t.ok(p.returncode == 0 and f"class: {cls}" in p.stdout,
             f"{role} account is of class {cls}", p.stdout + p.stderr)
        p = ctl("user", "verify", user, input=pw)
        t.ok(p.returncode == 0, f"{role} password works", p.stderr)
    p = ctl("user", "show", vals["GOVMAIL_CITIZEN_USER"])
    t.ok("resident-id: recorded" in p.stdout, "a citizen with an ID number",
         p.stdout)
    p = ctl("user", "list")
    t.ok(sum(1 for ln in p.stdout.splitlines()
             if ln.split("\t")[1] == "citizen") >= 3, "a few citizens",
         p.stdout)
    passwords = [v for k, v in vals.items() if k.endswith("_PASS")]
    t.eq(len(set(passwords)), len(passwords), "every password differs")
    with open(os.path.join(demo, "govmail.conf")) as f:
        conf = f.read()
    t.ok(not any(pw in conf for pw in passwords),
         "no password in govmail.conf")


def second_run(t):
    before = snapshot()
    users = ctl("user", "list").stdout
    p = run_step()
    t.ok(p.returncode == 0, "the step runs again", p.stdout + p.stderr)
    t.eq(p.stdout, "", "the second run has nothing to say")
    t.eq(snapshot(), before, "the second run changes no file")
    t.eq(ctl("user", "list").stdout, users, "... and no account")


def lost_env(t):
    # The env file gone: the accounts stay, new passwords are set and kept.
    os.unlink(os.path.join(demo, "env.d", "10-store.env"))
    p = run_step()
    t.ok(p.returncode == 0, "the step repairs a lost env file", p.stderr)
    vals = env_file()
    p = ctl("user", "verify", vals["GOVMAIL_OFFICIAL_USER"],
            input=vals["GOVMAIL_OFFICIAL_PASS"])
    t.ok(p.returncode == 0, "the new password works", p.stderr)


for case in (first_run, second_run, lost_env):
    t.run_case(case)
t.done()
