#!/usr/bin/env python3
"""quickstart's IMAP step (demo.d/40-imapd.sh, after 10-store.sh and
20-ca.sh) run twice into a scratch folder (never /work/main/demo) on free
ports: govmail-imapd serves the demo accounts over imaps and STARTTLS with
the demo CA's localhost certificate (verified against the demo root),
demo/env.d/40-imapd.env holds both ports, and the second run starts
nothing new.  As root everything runs as `nobody`, since the workers never
run as root."""
import imaplib
import os
import signal
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, TOP_SRCDIR, program, free_port  # noqa: E402

CA = program("ca/govmail-ca")
CTL = program("tools/govmailctl")
IMAPD = program("imapd/govmail-imapd")
t = Suite()
demo = os.path.join(t.tmp, "demo")
os.makedirs(demo, mode=0o700)
as_user = []
if os.geteuid() == 0:
    os.chmod(t.tmp, 0o755)
    subprocess.run(["chown", "-R", "nobody:nogroup", demo], check=True)
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup",
               "--clear-groups"]
imap, imaps, pki = free_port(), free_port(), free_port()
SCRIPT = """set -euo pipefail
say() { printf 'quickstart: %s\\n' "$*"; }
demo=$1 top=$2 GOVMAIL_DOMAIN=demo.gov.example
. "$2/demo.d/10-store.sh"
. "$2/demo.d/20-ca.sh"
. "$2/demo.d/40-imapd.sh"
"""
ENV = {"GOVMAILCTL": CTL, "GOVMAIL_CA": CA, "GOVMAIL_IMAPD": IMAPD,
       "GOVMAIL_PKI_PORT": str(pki), "GOVMAIL_IMAP_PORT": str(imap),
       "GOVMAIL_IMAPS_PORT": str(imaps), "HOME": demo}


def run_steps():
    return t.run(as_user + ["bash", "-c", SCRIPT, "step", demo, TOP_SRCDIR],
                 env=ENV, timeout=180)


def env_of(name):
    vals = {}
    try:
        with open(os.path.join(demo, "env.d", name)) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                vals[k] = v
    except OSError:
        pass
    return vals


def pid_of(name):
    try:
        with open(os.path.join(demo, "run", name)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def stop(name):
    pid = pid_of(name)
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    except OSError:
        pass


try:
    p = run_steps()
    t.ok(p.returncode == 0 and "imapd: govmail-imapd on" in p.stdout,
         "the IMAP step runs", p.stdout + p.stderr)
    ev = env_of("40-imapd.env")
    t.eq(ev.get("GOVMAIL_IMAP_PORT"), str(imap), "GOVMAIL_IMAP_PORT")
    t.eq(ev.get("GOVMAIL_IMAPS_PORT"), str(imaps), "GOVMAIL_IMAPS_PORT")
    store = env_of("10-store.env")
    user = next((store[k] for k in store if k.endswith("_USER") and
                 "CITIZEN" in k), None)
    pw = store.get(next((k for k in store if k.endswith("_USER") and
                         "CITIZEN" in k), "").replace("_USER", "_PASS"))
    t.ok(user and pw, "a citizen account in 10-store.env", store.keys())
    root = env_of("20-ca.env").get("GOVMAIL_CA_ROOT", "")
    ctx = ssl.create_default_context(cafile=root)
    try:
        m = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=ctx,
                              timeout=30)
        err = None
    except (ssl.SSLError, OSError) as e:
        err = e
    t.ok(err is None, "imaps certificate verifies against the demo root "
         "as localhost", err)
    t.eq(m.login(user, pw)[0], "OK", "citizen logs in over imaps")
    typ, data = m.select("INBOX")
    t.eq(typ, "OK", "INBOX selects")
    m.logout()
    m = imaplib.IMAP4("localhost", imap, timeout=30)
    m.starttls(ssl_context=ctx)
    t.eq(m.login(user, pw)[0], "OK", "citizen logs in after STARTTLS")
    m.logout()
    first = pid_of("govmail-imapd.pid")
    p = run_steps()
    t.ok(p.returncode == 0, "second run succeeds", p.stdout + p.stderr)
    t.eq(pid_of("govmail-imapd.pid"), first,
         "second run keeps the running daemon")
finally:
    stop("govmail-imapd.pid")
    stop("govmail-ca.pid")
t.done()
