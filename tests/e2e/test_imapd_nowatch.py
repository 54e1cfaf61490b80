#!/usr/bin/env python3
"""govmail-imapd without an inotify instance (the per-user limit, 128 by
default, used up): the workers keep serving, say so once in the log, and
IDLE sessions still learn of new mail, flag changes and expunges by
polling.  The test hook GOVMAIL_IMAPD_TEST_NO_INOTIFY makes each worker
behave as if inotify_init1 had failed (see imapd.c); exhausting the real
limit would break every other process of the same user."""
import subprocess
import time

from tap import Suite
from imapdenv import Imapd, Raw

t = Suite()
d = Imapd(t, workers=2, plaintext_loopback=True)
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.deliver(A, b"Subject: first\r\n\r\nx\r\n")
d.start(env={"GOVMAIL_IMAPD_TEST_NO_INOTIFY": "1"})


def workers():
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(d.proc.pid)],
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


for _ in range(50):
    if len(workers()) == 2 and d.logtext().count(
            "event=watch-unavailable") >= 2:
        break
    time.sleep(0.1)
first = workers()
t.eq(len(first), 2, "both workers run without inotify")
t.eq(d.logtext().count("event=watch-unavailable"), 2,
     "each worker warns once that it polls instead")
t.ok("fallback=poll" in d.logtext(), "the warning names the fallback")


def idle_session():
    r = Raw(d.imap, timeout=20)
    _, tag = r.cmd("l", f'LOGIN "{A}" "alice-pw"')
    t.ok(tag.startswith("l OK"), "login", tag)
    r.cmd("s", "SELECT INBOX")
    r.send("i IDLE\r\n")
    t.ok(r.line().startswith("+"), "IDLE accepted")
    return r


def wait_for(r, what, limit=15.0):
    """Lines until one contains what (bounded: the socket timeout)."""
    end = time.monotonic() + limit
    seen = []
    while time.monotonic() < end:
        try:
            ln = r.line()
        except OSError:
            break
        if ln == "":
            break
        seen.append(ln)
        if what in ln:
            return True, seen
    return False, seen


# Several IDLE sessions, so both workers hold some.
idlers = [idle_session() for _ in range(4)]
d.deliver(A, b"Subject: second\r\n\r\ny\r\n")
for k, r in enumerate(idlers):
    got, seen = wait_for(r, "* 2 EXISTS")
    t.ok(got, f"IDLE session {k} sees the new message by polling", seen)

# A flag change and an expunge from another session reach IDLE too.
w = Raw(d.imap, timeout=20)
w.cmd("l", f'LOGIN "{A}" "alice-pw"')
w.cmd("s", "SELECT INBOX")
_, tag = w.cmd("f", "STORE 1 +FLAGS (\\Flagged)")
t.ok(tag.startswith("f OK"), "STORE from another session")
got, seen = wait_for(idlers[0], "\\Flagged")
t.ok(got, "IDLE sees the flag change", seen)
w.cmd("d", "STORE 1 +FLAGS (\\Deleted)")
_, tag = w.cmd("e", "EXPUNGE")
t.ok(tag.startswith("e OK"), "EXPUNGE from another session")
got, seen = wait_for(idlers[1], "* 1 EXPUNGE")
t.ok(got, "IDLE sees the expunge", seen)
for r in idlers:
    r.send("DONE\r\n")
    _, tag = r.until("i")
    t.ok(tag.startswith("i OK"), "IDLE ends with OK", tag)
    r.close()
w.close()
t.eq(sorted(workers()), sorted(first), "no worker died or was restarted")
t.ok(d.proc.poll() is None, "the daemon is still running")
d.stop()
t.done()
