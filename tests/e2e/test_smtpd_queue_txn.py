#!/usr/bin/env python3
"""test_smtpd_queue_txn.py - one store transaction for everything a
delivery records, against the real govmail-smtpd and govmailctl:

- exactly-once submission: an authenticated user who submits the same
  Message-ID again gets "250 2.0.0 Already delivered as <id>" and no second
  copy; another Message-ID, a message without one, another account, and
  unauthenticated mail on port 25 are not de-duplicated; a submission
  answered 452 (every mailbox full) is stored when retried; with
  [smtpd] dedup_window = 0 nothing is;
- the outbound queue lives in the store: a message for a local and a
  remote recipient leaves one local copy and one queue entry, shown by
  `govmailctl queue list` and counted by `stats`; `queue flush` makes it
  due; a backup restored elsewhere still has the entry (and the dedup
  record: a resubmission there is still refused); `check` finds no damage.

Skips itself until govmail-smtpd and govmailctl are built.
"""
import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program, free_port  # noqa: E402

if not (os.access(program("smtpd/govmail-smtpd"), os.X_OK) and
        os.access(program("tools/govmailctl"), os.X_OK)):
    print("1..0 # SKIP govmail-smtpd or govmailctl not built")
    sys.exit(0)

from smtpdenv import Smtpd, tls_client_ctx  # noqa: E402

D = "city.example"
t = Suite()
dead = free_port()      # nothing listens: remote mail stays queued
d = Smtpd(t, name="queue-txn",
          extra_smtpd=f"relayhost = 127.0.0.1:{dead}\n"
                      "outbound_tls = none\nqueue_retry = 1h\n")
alice, bob, carol = f"alice@{D}", f"bob@{D}", f"carol@{D}"
d.ctl("domain", "add", D)
for a in (alice, bob, carol):
    d.user(a, a.split("@")[0] + "-pw")
d.start()


def msg(mid, subject="s", sender=None):
    head = (f"From: {sender or alice}\r\nTo: {bob}\r\n"
            f"Subject: {subject}\r\n")
    if mid:
        head += f"Message-ID: {mid}\r\n"
    return (head + "\r\nbody\r\n").encode()


def submit(user, rcpts, raw, port=None):
    """(code, text) of the reply to the message."""
    s = smtplib.SMTP("127.0.0.1", port or d.sub, timeout=30)
    try:
        s.ehlo()
        if user is not None:
            s.starttls(context=tls_client_ctx())
            s.login(user, user.split("@")[0] + "-pw")
        code, text = s.mail(user or "x@x.example")
        for r in rcpts:
            if code == 250:
                code, text = s.rcpt(r)
        if code == 250:
            code, text = s.data(raw)
        return code, text.decode(errors="replace")
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def count(addr):
    return len(d.ls(addr))


# ---- exactly-once submission ----------------------------------------------
code, first = submit(alice, [bob], msg("<bill-1@city.example>"))
t.eq(code, 250, "first submission: 250")
code, text = submit(alice, [bob], msg("<bill-1@city.example>", "again"))
t.eq(code, 250, "the same Message-ID again: still 250")
t.ok(text.startswith("2.0.0 Already delivered as ") and
     first.rsplit(" ", 1)[-1] in text,
     "the reply says it was delivered before, naming the first id",
     (first, text))
t.eq(count(bob), 1, "the resubmission stored nothing")
t.ok("event=duplicate" in d.logtext(), "logged as a duplicate")

code, _ = submit(alice, [bob], msg("<bill-2@city.example>"))
t.eq((code, count(bob)), (250, 2), "another Message-ID: delivered")
code, _ = submit(alice, [bob], msg(None))
code2, _ = submit(alice, [bob], msg(None))
t.eq((code, code2, count(bob)), (250, 250, 4),
     "no Message-ID: never de-duplicated")
code, text = submit(carol, [bob], msg("<bill-1@city.example>",
                                      sender=carol))
t.ok(code == 250 and "Already" not in text and count(bob) == 5,
     "the same Message-ID from another account is its own submission",
     text)
inb = msg("<in-1@x.example>", sender="x@x.example")
code, text0 = submit(None, [bob], inb, port=d.smtp)
code2, text = submit(None, [bob], inb, port=d.smtp)
t.ok(code == 250 and code2 == 250 and "Already" not in text and
     count(bob) == 7, "unauthenticated inbound mail: not de-duplicated",
     (code, text0, code2, text))
st = d.stats()
t.eq(st.get("dedup-records"), 3, "stats: three remembered submissions")

# A submission nobody accepted is not remembered: the retry is stored.
d.ctl("user", "quota", carol, "--quota-bytes", "10M", "--quota-messages",
      "1")
d.ctl("deliver", carol, input="Subject: fill\r\n\r\nx\r\n")
code, text = submit(alice, [carol], msg("<full-1@city.example>"))
t.eq(code, 452, "every mailbox full: 452")
d.ctl("user", "quota", carol, "--quota-bytes", "10M", "--quota-messages",
      "100")
code, text = submit(alice, [carol], msg("<full-1@city.example>"))
t.ok(code == 250 and "Already" not in text and count(carol) == 2,
     "the retry after 452 is delivered, not answered as a duplicate",
     (code, text))

# ---- the queue is in the store ----------------------------------------------
remote = "someone@remote.example"
code, _ = submit(alice, [carol, remote], msg("<both-1@city.example>"))
t.eq(code, 250, "a local and a remote recipient: 250")
t.eq(count(carol), 3, "the local copy is there")
lines = d.ctl("queue", "list").stdout.splitlines()
entries = [ln for ln in lines if "\t" in ln]
t.ok(len(entries) == 1, "queue list: one entry", lines)
if entries:
    t.ok("domain=remote.example" in entries[0] and
         "sender=<" + alice + ">" in entries[0],
         "the entry names the remote domain and the sender", entries[0])
t.eq(lines[-1] if lines else "", "1 entry", "queue list: count line")
t.eq(d.stats().get("queued"), 1, "stats: queued 1")
# The agent tried (the relay is down) and put it back for an hour.
end = time.time() + 15
while time.time() < end and "attempts=0" in \
        d.ctl("queue", "list").stdout:
    time.sleep(0.3)
after = d.ctl("queue", "list").stdout
t.ok("attempts=1" in after and "\tnow\t" not in after,
     "after an attempt the entry waits for its retry", after)
p = d.ctl("queue", "flush")
t.eq(p.stdout.strip(), "1 entry due now", "queue flush: one entry")
code, text = submit(alice, [carol, remote], msg("<both-1@city.example>"))
t.ok(code == 250 and "Already delivered" in text and count(carol) == 3 and
     d.stats().get("queued") == 1,
     "a resubmission queues nothing and delivers nothing", text)

# ---- backup and restore keep queue and dedup records ----------------------
bdir = os.path.join(d.dir, "bk")
p = d.ctl("backup", bdir)
t.eq(p.returncode, 0, "backup while smtpd runs")
d.stop()
conf2 = os.path.join(d.dir, "restored.conf")
with open(d.conf) as f:
    text = f.read().replace("path = store\n", "path = store2\n")
with open(conf2, "w") as f:
    f.write(text)
if os.geteuid() == 0:
    subprocess.run(["chown", "nobody:nogroup", conf2], check=True)
main_conf = d.conf
d.conf = conf2
p = d.ctl("restore", bdir)
t.eq(p.returncode, 0, "restore into a new path")
lines = d.ctl("queue", "list").stdout.splitlines()
t.eq(lines[-1] if lines else "", "1 entry",
     "the restored store has the queue entry")
t.eq(d.stats().get("dedup-records"), 5,
     "the restored store has the de-duplication records")
p = d.ctl("check", check=False)
t.eq((p.returncode, p.stdout.strip()), (0, "store: ok"),
     "check: the restored store is consistent")
d.conf = main_conf

# ---- dedup_window = 0: off -------------------------------------------------
d2 = Smtpd(t, name="queue-txn-off", extra_smtpd="dedup_window = 0\n")
d2.ctl("domain", "add", D)
d2.user(alice, "alice-pw")
d2.user(bob, "bob-pw")
d2.start()
d = d2
code, _ = submit(alice, [bob], msg("<bill-1@city.example>"))
code2, text = submit(alice, [bob], msg("<bill-1@city.example>"))
t.ok(code == 250 and code2 == 250 and "Already" not in text and
     count(bob) == 2, "dedup_window = 0: every submission is stored", text)
d2.stop()
t.done()
