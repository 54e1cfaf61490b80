#!/usr/bin/env python3
"""The quickstart's smtpd step (demo.d/30-smtpd.sh) run twice into a
scratch demo: it adds [smtpd] and [tls] to govmail.conf once, starts
govmail-smtpd on the three demo ports (pid file in demo/run), writes
demo/env.d/30-smtpd.env, and a second run changes nothing and starts
nothing new.  Run as root it serves the store as the store's owner."""
import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, free_port, program, wait_port, TOP_SRCDIR  # noqa
from smtpdenv import tls_client_ctx, GOVMAILCTL  # noqa: E402

t = Suite()
top = os.path.join(t.tmp, "top")
demo = os.path.join(top, "demo")
os.makedirs(os.path.join(demo, "tls"))
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                os.path.join(demo, "tls", "server.key"), "-out",
                os.path.join(demo, "tls", "server.crt"), "-days", "2",
                "-subj", "/CN=localhost"], check=True, capture_output=True)
os.chmod(os.path.join(demo, "tls", "server.key"), 0o600)
conf = os.path.join(demo, "govmail.conf")
with open(conf, "w") as f:
    f.write("[store]\npath = store\npassword_opslimit = 1\n"
            "password_memlimit = 8M\n")
asuser = []
if os.geteuid() == 0:
    os.chmod(t.tmp, 0o755)
    subprocess.run(["chown", "-R", "nobody:nogroup", top], check=True)
    asuser = ["setpriv", "--reuid=nobody", "--regid=nogroup",
              "--clear-groups"]
p = t.run(asuser + [GOVMAILCTL, "-c", conf, "domain", "add",
                    "demo.gov.example"])
t.ok(p.returncode == 0, "demo store made", p.stderr)
ports = {"GOVMAIL_SMTP_PORT": free_port(),
         "GOVMAIL_SUBMISSION_PORT": free_port(),
         "GOVMAIL_SUBMISSIONS_PORT": free_port()}
script = os.path.join(TOP_SRCDIR, "demo.d", "30-smtpd.sh")
env = {k: str(v) for k, v in ports.items()}
env["GOVMAIL_SMTPD"] = program("smtpd/govmail-smtpd")
runner = ('say() { printf "quickstart: %s\\n" "$*"; }; '
          f'demo={demo}; top={top}; . {script}')


def step():
    return t.run(["bash", "-c", runner], env=env, timeout=60)


pidf = os.path.join(demo, "run", "govmail-smtpd.pid")
p1 = step()
t.ok(p1.returncode == 0 and "govmail-smtpd on" in p1.stdout,
     "first run starts the daemon", p1.stdout + p1.stderr)
pid = int(open(pidf).read()) if os.path.exists(pidf) else 0
try:
    t.ok(pid > 0 and os.path.exists(f"/proc/{pid}"), "pid file names it")
    t.ok(all(wait_port(p) for p in ports.values()), "all three ports answer")
    s = smtplib.SMTP("127.0.0.1", ports["GOVMAIL_SMTP_PORT"], timeout=30)
    code, text = s.ehlo("c")
    t.ok(code == 250 and b"STARTTLS" in text, "25: EHLO offers STARTTLS")
    s.quit()
    s = smtplib.SMTP_SSL("127.0.0.1", ports["GOVMAIL_SUBMISSIONS_PORT"],
                         context=tls_client_ctx(), timeout=30)
    code, text = s.ehlo("c")
    t.ok(code == 250 and b"AUTH" in text, "465: TLS with the demo "
         "certificate, AUTH offered")
    s.quit()
    envf = open(os.path.join(demo, "env.d", "30-smtpd.env")).read()
    t.eq(sorted(envf.split()), sorted(f"{k}={v}" for k, v in ports.items()),
         "30-smtpd.env holds the three ports")
    before = open(conf).read()
    t.eq(before.count("[smtpd]"), 1, "one [smtpd] section")
    t.eq(before.count("[tls]"), 1, "one [tls] section")
    p2 = step()
    t.ok(p2.returncode == 0 and p2.stdout == "",
         "second run says nothing", p2.stdout + p2.stderr)
    t.eq(int(open(pidf).read()), pid, "and starts nothing new")
    t.eq(open(conf).read(), before, "govmail.conf unchanged")
finally:
    # The daemon is not our child (the step detached it): poll /proc.
    if pid > 0:
        os.kill(pid, 15)
        for _ in range(150):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
t.ok(pid > 0 and not os.path.exists(f"/proc/{pid}"), "stopped by its pid")
t.done()
