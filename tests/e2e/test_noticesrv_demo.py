#!/usr/bin/env python3
"""The quickstart's store, CA, smtpd and notice steps (demo.d/10-store.sh,
20-ca.sh, 30-smtpd.sh, 50-notice.sh) into a scratch folder (never
/work/main/demo) on free ports, with notice-list enforcement on: the
demo's govmail.conf names the demo CA (notice_ca_file, notice_crl_file),
the department's signed notice is accepted by the notice list and waits
in a citizen's INBOX with Authentication-Results smime=pass, and
govmailctl notice list / report know it.  As root everything runs as
`nobody` (the daemons never run as root)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, TOP_SRCDIR, program, free_port  # noqa: E402

CA = program("ca/govmail-ca")
CTL = program("tools/govmailctl")
SMTPD = program("smtpd/govmail-smtpd")
NOTICE = program("tools/govmail-notice")
t = Suite()
if not all(os.access(p, os.X_OK) for p in (CA, CTL, SMTPD, NOTICE)):
    print("1..0 # SKIP govmail-ca, govmailctl, govmail-smtpd or "
          "govmail-notice not built")
    sys.exit(0)

asuser = []
top = os.path.join(t.tmp, "top")
demo = os.path.join(top, "demo")
os.makedirs(demo, mode=0o700)
if os.geteuid() == 0:
    os.chmod(t.tmp, 0o755)
    subprocess.run(["chown", "-R", "nobody:nogroup", top], check=True)
    asuser = ["setpriv", "--reuid=nobody", "--regid=nogroup",
              "--clear-groups"]
SCRIPT = """set -uo pipefail
say() { printf 'quickstart: %s\\n' "$*"; }
demo=$1 top=$2 GOVMAIL_DOMAIN=demo.gov.example
. "$2/demo.d/10-store.sh"
. "$2/demo.d/20-ca.sh"
. "$2/demo.d/30-smtpd.sh"
. "$2/demo.d/50-notice.sh"
"""
ENV = {"GOVMAILCTL": CTL, "GOVMAIL_CA": CA, "GOVMAIL_SMTPD": SMTPD,
       "GOVMAIL_NOTICE": NOTICE, "HOME": demo,
       "GOVMAIL_PKI_PORT": str(free_port()),
       "GOVMAIL_SMTP_PORT": str(free_port()),
       "GOVMAIL_SUBMISSION_PORT": str(free_port()),
       "GOVMAIL_SUBMISSIONS_PORT": str(free_port())}
conf = os.path.join(demo, "govmail.conf")


def ctl(*args):
    return t.run(asuser + [CTL, "-c", conf] + list(args), timeout=60)


def stop(pidfile):
    try:
        with open(os.path.join(demo, "run", pidfile)) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (OSError, ValueError):
        pass


try:
    p = t.run(asuser + ["bash", "-c", SCRIPT, "step", demo, TOP_SRCDIR],
              env=ENV, timeout=240)
    out = p.stdout + p.stderr
    t.ok("notice: signed notice sent" in p.stdout,
         "the demo's notice step sends the signed notice", out)
    text = open(conf).read()
    t.ok("notice_ca_file = ca/root.crt" in text and
         "notice_crl_file = ca/issuing.crl" in text,
         "the demo's [smtpd] names the demo CA and its CRL")
    lst = ctl("notice", "list")
    t.ok(lst.returncode == 0 and "all-citizens@demo.gov.example" in
         lst.stdout, "govmailctl notice list shows the demo notice",
         lst.stdout + lst.stderr)
    mid = lst.stdout.split("\t")[1] if "\t" in lst.stdout else "?"
    rep = ctl("notice", "report", mid)
    t.ok(rep.returncode == 0 and "\tdelivered\t" in rep.stdout and
         " failed 0 " in rep.stdout, "the report: delivered, none failed",
         rep.stdout + rep.stderr)
    first = [ln.split("\t")[0] for ln in rep.stdout.splitlines()
             if "\tdelivered\t" in ln]
    box = ctl("ls", first[0] if first else "?", "INBOX").stdout
    uid = box.splitlines()[-1].split("\t")[0] if box.strip() else "0"
    raw = subprocess.run(asuser + [CTL, "-c", conf, "cat",
                                   first[0] if first else "?", "INBOX",
                                   uid], capture_output=True,
                         timeout=60).stdout
    head = raw.split(b"\r\n\r\n", 1)[0]
    t.ok(b"smime=pass" in head and b"multipart/signed" in head,
         "the citizen's INBOX holds the notice with smime=pass",
         head.decode(errors="replace")[:1500])
finally:
    stop("govmail-smtpd.pid")
    stop("govmail-ca.pid")
t.done()
