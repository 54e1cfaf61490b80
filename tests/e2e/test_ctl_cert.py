#!/usr/bin/env python3
"""govmailctl user add --issue-cert [--p12 FILE]: the account and its
certificate from a throwaway CA (govmail-ca init), the PKCS#12 opened with
openssl; and nothing half-done when anything fails (no account, no file,
no certificate)."""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program  # noqa: E402
from ctlenv import Ctl, GOVMAILCTL, RESIDENT_ID_OK, USCC_OK  # noqa: E402

CA = program("ca/govmail-ca")
if not (os.access(CA, os.X_OK) and os.access(GOVMAILCTL, os.X_OK)):
    print("1..0 # SKIP govmail-ca or govmailctl not built")
    sys.exit(0)

t = Suite()
D = "city.gov.example"
c = Ctl(t, extra="[ca]\ndir = ca\npassphrase_file = ca-pass\n"
        "base_url = http://127.0.0.1:9\n")
with open(os.path.join(c.dir, "ca-pass"), "w") as f:
    f.write("ca-passphrase-for-tests\n")
os.chmod(os.path.join(c.dir, "ca-pass"), 0o600)


def ca(*args):
    return t.run([CA, "-c", c.conf] + list(args), timeout=120)


def p12_cert(path, password):
    p = subprocess.run(["openssl", "pkcs12", "-in", path, "-passin",
                        f"pass:{password}", "-nokeys", "-clcerts"],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        return ""
    x = subprocess.run(["openssl", "x509", "-noout", "-text"],
                       input=p.stdout, capture_output=True, timeout=60)
    return x.stdout.decode()


def fields(out):
    return dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)


def setup(t):
    p = ca("init")
    t.ok(p.returncode == 0, "govmail-ca init", p.stderr)
    c.must("domain", "add", D)


def issue(t):
    p12 = os.path.join(t.tmp, "zhang.p12")
    p = c.user(f"zhang@{D}", "citizen", "--name", "Zhang San",
               "--resident-id", RESIDENT_ID_OK, "--verified",
               "--issue-cert", "--p12", p12)
    c.ok(p, "user add citizen --issue-cert")
    f = fields(p.stdout)
    t.ok(len(f.get("serial", "")) > 0 and f.get("pkcs12") == p12
         and len(f.get("password", "")) >= 16,
         "serial, pkcs12 and password printed", p.stdout)
    t.eq(stat.S_IMODE(os.stat(p12).st_mode), 0o600, "the PKCS#12 is 0600")
    text = p12_cert(p12, f.get("password", ""))
    t.ok(f"email:zhang@{D}" in text, "the PKCS#12 opens with openssl and "
         "holds the account's certificate", text[:2000])
    t.ok("2.23.140.1.5.4.3" in text, "a verified citizen: individual-"
         "validated policy", text[:2000])
    t.ok(RESIDENT_ID_OK not in text, "no ID number in the certificate")
    p = c.must("user", "show", f"zhang@{D}")
    t.ok(f"certificate: {f.get('serial')}" in p.stdout,
         "the serial is recorded on the account", p.stdout)
    p = ca("list")
    t.ok(f.get("serial", "?") in p.stdout and "good" in p.stdout,
         "the CA database has it", p.stdout)

    # default file name ADDRESS.p12 in the current folder
    p = subprocess.run([GOVMAILCTL, "-c", c.conf, "user", "add",
                        f"acme@{D}", "--class", "legal-person", "--org",
                        "ACME Trading Co", "--org-id", USCC_OK,
                        "--issue-cert"], input=b"pw\n", cwd=t.tmp,
                       capture_output=True, timeout=120)
    t.ok(p.returncode == 0 and os.path.exists(
        os.path.join(t.tmp, f"acme@{D}.p12")),
         "--issue-cert without --p12 writes ADDRESS.p12", p.stderr)
    p = c.user(f"wang@{D}", "citizen", "--name", "Wang Fang",
               "--issue-cert", "--p12", os.path.join(t.tmp, "wang.p12"))
    c.ok(p, "an unverified citizen")
    text = p12_cert(os.path.join(t.tmp, "wang.p12"),
                    fields(p.stdout).get("password", ""))
    t.ok("2.23.140.1.5.1.3" in text, "... gets a mailbox-validated "
         "certificate", text[:2000])


def nothing_half_done(t):
    n_certs = ca("list").stdout.count("\n")
    existing = os.path.join(t.tmp, "zhang.p12")
    with open(existing, "rb") as f:
        before = f.read()
    c.fails(c.user(f"li@{D}", "official", "--name", "Li Wei", "--org",
                   "Housing", "--issue-cert", "--p12", existing), 73,
            "--p12 naming an existing file")
    with open(existing, "rb") as f:
        t.ok(f.read() == before, "the existing file is untouched")
    c.fails(c.run("user", "show", f"li@{D}"), 67, "... and no account")
    # The CA refuses (an official without a name) after the account was
    # made: the account goes again, and the file.
    p12 = os.path.join(t.tmp, "noname.p12")
    p = c.user(f"noname@{D}", "official", "--org", "Housing",
               "--issue-cert", "--p12", p12)
    c.fails(p, 65, "certificate refused by the CA")
    t.ok("account not created" in p.stderr, "... saying so", p.stderr)
    c.fails(c.run("user", "show", f"noname@{D}"), 67,
            "... the account is gone again")
    t.ok(not os.path.exists(p12), "... and so is the PKCS#12 file")
    t.eq(ca("list").stdout.count("\n"), n_certs, "... nothing was issued")
    c.fails(c.user(f"x@{D}", "citizen", "--p12", p12), 64,
            "--p12 without --issue-cert")
    # A CA that cannot be opened: nothing made at all.
    bad = Ctl(t, "badca", extra="[ca]\ndir = ca\n"
              "passphrase_file = wrong-pass\n")
    with open(os.path.join(bad.dir, "wrong-pass"), "w") as f:
        f.write("not the passphrase\n")
    os.symlink(os.path.join(c.dir, "ca"), os.path.join(bad.dir, "ca"))
    os.symlink(c.store, bad.store)
    p12 = os.path.join(t.tmp, "bad.p12")
    c.fails(bad.user(f"bad@{D}", "citizen", "--issue-cert", "--p12", p12),
            69, "a wrong CA passphrase")
    c.fails(c.run("user", "show", f"bad@{D}"), 67, "... and no account")
    t.ok(not os.path.exists(p12), "... and no file")


for case in (setup, issue, nothing_half_done):
    t.run_case(case)
t.done()
