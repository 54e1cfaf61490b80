#!/usr/bin/env python3
"""govmail-smtpd durability: while four clients submit mail as fast as
they can, the workers are killed with SIGKILL again and again (the parent
restarts them).  Afterwards every message that received 250 is in its
mailbox exactly once, no message is there twice, and govmailctl check
finds the store consistent.  The store's regions are in System V shared
memory (the default); with GOVMAIL_TEST_REGIONS=files
(test_smtpd_kill_files.py) the same with them in files."""
import collections
import os
import random
import signal
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd, workers_regions  # noqa: E402

t = Suite()
D = "city.example"
RCPTS = [f"r{i}@{D}" for i in range(3)]
CLIENTS = 4
RUN_SECONDS = 10
KILL_EVERY = 1.3        # > DAEMON_RESTART_MIN_UPTIME: restarts at once
FILES = os.environ.get("GOVMAIL_TEST_REGIONS") == "files"
d = Smtpd(t, workers=2, extra_smtpd="rate_ip_messages = 0\n",
          extra_store="regions = files\n" if FILES else "")
d.ctl("domain", "add", D)
for r in RCPTS:
    d.user(r, "pw")
d.start()
t.eq(workers_regions(d), "files" if FILES else "shared",
     "the workers' regions")

accepted = collections.Counter()    # subject -> recipients it was sent to
lock = threading.Lock()
stop = threading.Event()
stats = {"ok": 0, "failed": 0}


def client(n):
    seq = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=10)
            s.ehlo("load")
            while not stop.is_set():
                seq += 1
                subj = f"c{n}-m{seq}"
                rcpts = RCPTS[:1 + seq % len(RCPTS)]
                m = (f"From: load@remote.example\r\nSubject: {subj}\r\n"
                     f"\r\n{'x' * (seq % 3000)}\r\n").encode()
                s.sendmail("load@remote.example", rcpts, m)
                with lock:
                    accepted[subj] = tuple(rcpts)
                    stats["ok"] += 1
            s.quit()
        except (smtplib.SMTPException, OSError):
            with lock:
                stats["failed"] += 1
            time.sleep(0.05)


threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
for th in threads:
    th.start()
kills = 0
end = time.time() + RUN_SECONDS
rng = random.Random(7)
while time.time() < end:
    time.sleep(KILL_EVERY)
    pids = d.worker_pids()
    if pids:
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
stop.set()
for th in threads:
    th.join(30)
t.diag(f"{stats['ok']} messages got 250, {stats['failed']} sessions "
       f"broke, {kills} workers killed")
t.ok(kills >= 5, "workers were killed again and again")
t.ok(stats["ok"] >= 20, "messages got 250 meanwhile")
t.ok(stats["failed"] >= 1, "some sessions were cut by the kills")

# Every recipient's mailbox: count each subject.
seen = {r: collections.Counter(ln.split("\t")[3] for ln in d.ls(r))
        for r in RCPTS}
missing = [(s, r) for s, rs in accepted.items() for r in rs
           if seen[r][s] != 1]
t.ok(not missing, "every message that got 250 is in each of its "
     "recipients' mailboxes exactly once", str(missing[:10]))
dups = [(r, s, n) for r in RCPTS for s, n in seen[r].items() if n > 1]
t.ok(not dups, "no message is in a mailbox twice", str(dups[:10]))
p = d.ctl("check", check=False)
t.ok(p.returncode == 0, "govmailctl check: the store is consistent",
     p.stdout + p.stderr)
t.ok(all(pid > 0 for pid in d.worker_pids()) and len(d.worker_pids()) == 2,
     "both workers are running again")
d.stop()
t.done()
