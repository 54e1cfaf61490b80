#!/usr/bin/env python3
"""At the end, a stopping daemon says BYE.  With plaintext_loopback, a loopback client logs in without TLS.  Then
three sessions on one mailbox (over two workers) append, flag, expunge
and UID EXPUNGE at random (fixed seed); afterwards every session's
sequence numbers and UIDs must equal a fresh session's: the untagged
EXPUNGE/EXISTS updates kept every view consistent."""
import imaplib
import random
import re

from tap import Suite
from imapdenv import Imapd

t = Suite()
d = Imapd(t, workers=2, plaintext_loopback=True)
A = "s@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "pw")
d.start()
# plaintext_loopback = yes: a loopback client may log in without TLS.
p = d.imap_plain()
t.ok("AUTH=PLAIN" in p.capabilities and "LOGINDISABLED" not in
     p.capabilities, "plaintext_loopback: AUTH=PLAIN on the plain port",
     p.capabilities)
t.eq(p.login(A, "pw")[0], "OK", "plaintext_loopback: LOGIN without TLS")
p.logout()
ms = []
for i in range(3):
    m = d.imap_tls()
    m.login(A, "pw")
    m.select("INBOX")
    ms.append(m)
random.seed(7)
for i in range(60):
    ms[0].append("INBOX", None, None, f"Subject: m{i}\r\n\r\nx\r\n".encode())
for step in range(300):
    m = random.choice(ms)
    op = random.random()
    try:
        if op < 0.3:
            m.append("INBOX", None, None, b"Subject: n\r\n\r\ny\r\n")
        elif op < 0.6:
            typ, data = m.search(None, "ALL")
            n = len(data[0].split())
            if n:
                k = random.randint(1, n)
                m.store(str(k), "+FLAGS", "(\\Deleted)")
        elif op < 0.75:
            m.expunge()
        elif op < 0.9:
            m.noop()
        else:
            m.uid("EXPUNGE", "1:*")
    except imaplib.IMAP4.error as e:
        t.ok(False, f"step {step}: {e}")
for m in ms:
    m.noop()
fresh = d.imap_tls()
fresh.login(A, "pw")
fresh.select("INBOX")


def uids(m):
    m.untagged_responses.clear()
    typ, data = m.fetch("1:*", "(UID)")
    out = []
    for x in data:
        if x is None:
            continue
        mm = re.match(rb"(\d+) \(UID (\d+)\)", x)
        if mm:
            out.append((int(mm.group(1)), int(mm.group(2))))
    return out


ref = uids(fresh)
t.ok(len(ref) > 0, "messages left at the end", len(ref))
for i, m in enumerate(ms):
    got = uids(m)
    t.eq(got, ref, f"session {i} agrees")
# SIGTERM: every open session hears "* BYE" before the worker exits.
last = d.imap_tls()
last.login(A, "pw")
last.select("INBOX")
d.stop()
last.sock.settimeout(10)
try:
    bye = last.readline()
except OSError as e:
    bye = str(e).encode()
t.ok(bye.startswith(b"* BYE"), "shutdown says BYE to open sessions", bye)
t.done()
