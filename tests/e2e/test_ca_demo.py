#!/usr/bin/env python3
"""quickstart's CA step (demo.d/20-ca.sh, after 10-store.sh) run twice into
a scratch folder (never /work/main/demo) on a free port: a demo CA, the
localhost TLS certificate, a PKCS#12 per demo account, govmail-ca serve
answering, demo/env.d/20-ca.env; the second run issues nothing new."""
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, TOP_SRCDIR, program, free_port  # noqa: E402
from ctlenv import GOVMAILCTL  # noqa: E402

CA = program("ca/govmail-ca")
t = Suite()
if not (os.access(CA, os.X_OK) and os.access(GOVMAILCTL, os.X_OK)):
    print("1..0 # SKIP govmail-ca or govmailctl not built")
    sys.exit(0)

demo = os.path.join(t.tmp, "demo")
os.makedirs(demo, mode=0o700)
port = free_port()
SCRIPT = """set -euo pipefail
say() { printf 'quickstart: %s\\n' "$*"; }
demo=$1 top=$2 GOVMAIL_DOMAIN=demo.gov.example
. "$2/demo.d/10-store.sh"
. "$2/demo.d/20-ca.sh"
"""
ENV = {"GOVMAILCTL": GOVMAILCTL, "GOVMAIL_CA": CA,
       "GOVMAIL_PKI_PORT": str(port)}
pidfile = os.path.join(demo, "run", "govmail-ca.pid")


def run_steps():
    return t.run(["bash", "-c", SCRIPT, "step", demo, TOP_SRCDIR], env=ENV,
                 timeout=120)


def env_file():
    vals = {}
    with open(os.path.join(demo, "env.d", "20-ca.env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            vals[k] = v
    return vals


def stop_serve():
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (OSError, ValueError):
        pass


try:
    p = run_steps()
    t.ok(p.returncode == 0 and "ca: demo CA" in p.stdout,
         "the CA step runs", p.stdout + p.stderr)
    vals = env_file()
    t.eq(vals.get("GOVMAIL_PKI_URL"), f"http://127.0.0.1:{port}",
         "GOVMAIL_PKI_URL")
    root = vals.get("GOVMAIL_CA_ROOT", "")
    t.ok(os.path.isfile(root), "GOVMAIL_CA_ROOT names the root")
    p12, pw = vals.get("GOVMAIL_OFFICIAL_P12", ""), \
        vals.get("GOVMAIL_OFFICIAL_P12_PASS", "")
    r = t.run(["openssl", "pkcs12", "-in", p12, "-passin", "pass:" + pw,
               "-nokeys", "-clcerts"])
    t.ok(r.returncode == 0 and "BEGIN CERTIFICATE" in r.stdout,
         "GOVMAIL_OFFICIAL_P12 opens with GOVMAIL_OFFICIAL_P12_PASS")
    t.eq(stat.S_IMODE(os.stat(os.path.join(demo, "ca-pass")).st_mode),
         0o600, "the CA passphrase file is 0600")
    crt = os.path.join(demo, "tls", "server.crt")
    v = t.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile",
               root, "-untrusted", crt, crt])
    t.ok(v.returncode == 0, "demo/tls/server.crt verifies for TLS",
         v.stdout + v.stderr)
    t.eq(stat.S_IMODE(os.stat(os.path.join(demo, "tls",
                                           "server.key")).st_mode),
         0o600, "the server key is 0600")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ca/root.crt",
                                timeout=10) as resp:
        t.eq(resp.status, 200, "govmail-ca serve answers on the PKI port")
    conf = os.path.join(demo, "govmail.conf")
    listed = t.run([CA, "-c", conf, "list"]).stdout
    n_first = len(listed.splitlines())
    t.ok(n_first >= 7, "a certificate for every demo account and the "
         "server", listed)
    pid1 = open(pidfile).read().strip()

    p = run_steps()
    t.ok(p.returncode == 0, "a second run succeeds", p.stdout + p.stderr)
    t.eq(len(t.run([CA, "-c", conf, "list"]).stdout.splitlines()), n_first,
         "the second run issues nothing new")
    t.eq(open(pidfile).read().strip(), pid1,
         "the second run keeps the running server")
    t.eq(env_file(), vals, "the env file is unchanged")
    a = t.run([CA, "-c", conf, "audit", "verify"])
    t.ok(a.returncode == 0, "the demo CA's audit log verifies", a.stdout)
finally:
    stop_serve()
t.done()
