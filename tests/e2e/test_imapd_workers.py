#!/usr/bin/env python3
"""govmail-imapd with two worker processes: IDLE sessions spread over the
workers all see a delivery (the store's change notification crosses
processes); a worker killed with SIGKILL is restarted by the parent and
service goes on; many idle TLS sessions cost little memory each."""
import os
import signal
import socket
import subprocess
import time

from tap import Suite
from imapdenv import IMAPD, Imapd, tls_client_ctx

t = Suite()
d = Imapd(t, workers=2)
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.deliver(A, b"Subject: first\r\n\r\nx\r\n")
d.start()


def workers():
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(d.proc.pid)],
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def idle_session():
    s = socket.create_connection(("127.0.0.1", d.imaps), timeout=10)
    s = tls_client_ctx().wrap_socket(s, server_hostname="localhost")
    f = s.makefile("rb")
    f.readline()
    s.sendall(f'a LOGIN "{A}" "alice-pw"\r\nb SELECT INBOX\r\n'
              'c IDLE\r\n'.encode())
    while True:
        ln = f.readline()
        if not ln or ln.startswith(b"+"):
            break
    return s, f


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for ln in fh:
                if ln.startswith("Pss:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


# Wait until both workers run.
for _ in range(50):
    if len(workers()) == 2:
        break
    time.sleep(0.1)
t.eq(len(workers()), 2, "two workers")

sessions = [idle_session() for _ in range(8)]
d.deliver(A, b"Subject: second\r\n\r\ny\r\n")
seen = 0
for s, f in sessions:
    s.settimeout(5)
    try:
        ln = f.readline()
        seen += b"2 EXISTS" in ln
    except OSError:
        pass
t.eq(seen, 8, "all 8 IDLE sessions (over both workers) see the delivery")
for s, f in sessions:
    s.close()

victim = workers()[0]
os.kill(victim, signal.SIGKILL)
for _ in range(100):
    w = workers()
    if len(w) == 2 and victim not in w:
        break
    time.sleep(0.1)
t.ok(len(workers()) == 2 and victim not in workers(),
     "a killed worker is replaced", workers())
m = d.imap_tls()
t.eq(m.login(A, "alice-pw")[0], "OK", "service goes on after the kill")
m.logout()

# Memory per idle TLS session: PSS of the workers before and after.
base = sum(rss_kib(p) for p in workers())
N = 300
many = [idle_session() for _ in range(N)]
time.sleep(0.5)
after = sum(rss_kib(p) for p in workers())
per = (after - base) * 1024 / N
t.diag(f"{N} idle TLS sessions in IDLE: {per / 1024:.1f} KiB each (PSS)")
# A sanitizer build pads every allocation: the bound is for real builds.
sanitized = b"libasan" in subprocess.run(["ldd", IMAPD],
                                          capture_output=True).stdout
if sanitized:
    t.n += 1
    print(f"ok {t.n} - idle TLS session memory # SKIP sanitizer build",
          flush=True)
else:
    t.ok(per < 64 * 1024, "an idle TLS session in IDLE costs under 64 KiB",
         f"{per:.0f} bytes")
s, f = many[0]
d.deliver(A, b"Subject: third\r\n\r\nz\r\n")
s.settimeout(5)
t.ok(b"3 EXISTS" in f.readline(), "one of the many still gets news")
for s, f in many:
    s.close()
d.stop()
t.done()
