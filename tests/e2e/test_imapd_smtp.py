#!/usr/bin/env python3
"""govmail-smtpd and govmail-imapd on one store: a message received by
smtpd over SMTP shows up in an IMAP IDLE session (the store's change
notification), and can be fetched whole."""
import os
import smtplib
import time

from tap import Suite, program, free_port, wait_port
from imapdenv import Imapd, _as_user

SMTPD = program("smtpd/govmail-smtpd")
t = Suite()
if not os.access(SMTPD, os.X_OK):
    print("1..0 # SKIP govmail-smtpd not built")
    raise SystemExit(0)
smtp = free_port()
d = Imapd(t, extra="[smtpd]\nhostname = mx.city.example\n"
          f"listen_smtp = 127.0.0.1:{smtp}\nlisten_submission =\n"
          "listen_submissions =\nworkers = 1\n")
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.start()
logf = open(os.path.join(d.dir, "smtpd.log"), "ab")
sp = t.spawn(_as_user() + [SMTPD, "-c", d.conf, "-f"], stdout=logf,
             stderr=logf, cwd=d.dir)
logf.close()
t.ok(wait_port(smtp), "govmail-smtpd listens")

m = d.imap_tls()
m.login(A, "alice-pw")
m.select("INBOX")
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
t.ok(m.readline().startswith(b"+"), "IDLE started")
body = ("From: bob@example.org\r\nTo: alice@city.example\r\n"
        "Subject: over smtp\r\nMessage-ID: <smtp1@example.org>\r\n\r\n"
        "hello from smtpd\r\n")
start = time.time()
with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
    s.sendmail("bob@example.org", [A], body)
m.sock.settimeout(10)
line = m.readline()
t.ok(b"1 EXISTS" in line, "the IDLE session sees the SMTP delivery", line)
t.diag(f"SMTP accept to IDLE EXISTS: {time.time() - start:.2f}s")
m.send(b"DONE\r\n")
while not m.readline().startswith(tag):
    pass
typ, data = m.fetch("1", "(BODY.PEEK[TEXT] ENVELOPE)")
t.ok(data[0][1] == b"hello from smtpd\r\n" and b"over smtp" in data[1],
     "FETCH of the message smtpd stored", data)
m.logout()
t.stop(sp)
d.stop()
t.done()
