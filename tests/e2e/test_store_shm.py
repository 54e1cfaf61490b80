#!/usr/bin/env python3
"""[store] shm_key: the store's regions in System V shared memory.  Mail
delivered is there after the segments vanish (a reboot, simulated with
ipcrm), after a switch to region files and back, and after a damaged
region file; a switch while a daemon has the store open with the other
kind is refused with one clear line."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from ctlenv import Ctl, GOVMAILCTL  # noqa: E402
from daemonenv import (_as_user, shm_key, shm_segments,  # noqa: E402
                       shm_remove)
from smtpdenv import Smtpd  # noqa: E402

t = Suite()
D = "city.example"
K = shm_key(0)
c = Ctl(t, "s", extra=f"[store]\nshm_key = {K}\n")
files_conf = os.path.join(c.dir, "files.conf")
with open(files_conf, "w") as f:
    f.write("[store]\npath = store\nshm_key = 0\n")
region = os.path.join(c.store, "__db.001")


def ls(conf=None):
    p = t.run([GOVMAILCTL, "-c", conf or c.conf, "ls", f"a@{D}"])
    c.ok(p, "ls")
    return [ln.split("\t")[3] for ln in p.stdout.splitlines()]


def deliver(i):
    c.must("deliver", f"a@{D}",
           input=f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())


def in_shm(t):
    c.must("domain", "add", D)
    c.ok(c.user(f"a@{D}", "citizen"), "user add")
    deliver(1)
    deliver(2)
    t.eq(ls(), ["m1", "m2"], "two messages")
    t.ok(len(shm_segments(K)) >= 3, "the regions are System V segments",
         str(shm_segments(K)))
    t.eq(os.path.getsize(region), 24, "__db.001 only refers to them")


def reboot(t):
    shm_remove(K)
    t.eq(shm_segments(K), [], "segments gone (as after a reboot)")
    t.eq(ls(), ["m1", "m2"], "the mail is there after the segments went")
    t.ok(len(shm_segments(K)) >= 3, "the regions were made anew")
    deliver(3)
    p = c.run("check")
    c.ok(p, "check after the segments went")


def to_files_and_back(t):
    t.eq(ls(files_conf), ["m1", "m2", "m3"], "switched to region files")
    t.eq(shm_segments(K), [], "the segments were removed")
    t.ok(os.path.getsize(region) > 4096, "__db.001 is a region again")
    t.eq(ls(), ["m1", "m2", "m3"], "switched back to shared memory")
    t.ok(len(shm_segments(K)) >= 3, "segments again")
    with open(region, "w"):
        pass                    # cut short
    t.eq(ls(), ["m1", "m2", "m3"], "a damaged __db.001 is made anew")
    c.ok(c.run("check"), "check")


def ctl_argv(conf):
    """govmailctl as the daemon's user (nobody when run as root)."""
    return _as_user() + [GOVMAILCTL, "-c", conf]


def in_use(t):
    k2 = shm_key(1)
    d = Smtpd(t, name="busy", extra_store=f"shm_key = {k2}\n")
    d.ctl("domain", "add", D)
    d.user(f"b@{D}", "pw")
    d.start()
    t.ok(len(shm_segments(k2)) >= 3, "the daemon's store is in segments")
    other = os.path.join(d.dir, "files.conf")
    with open(other, "w") as f:
        f.write("[store]\npath = store\nshm_key = 0\n")
    p = t.run(ctl_argv(other) + ["ls", f"b@{D}"])
    lines = p.stderr.splitlines()
    t.ok(p.returncode == 75 and len(lines) >= 1 and
         "stop every process using the store" in lines[-1],
         "another kind of regions while in use: refused, exit 75",
         f"exit {p.returncode}\n{p.stderr}")
    t.ok(len(shm_segments(k2)) >= 3, "the daemon's segments are untouched")
    d.stop()
    p = t.run(ctl_argv(other) + ["ls", f"b@{D}"])
    t.ok(p.returncode == 0, "once the daemon stopped, the switch works",
         p.stderr)
    t.eq(shm_segments(k2), [], "and its segments are gone")


def bad_key(t):
    with open(os.path.join(c.dir, "bad.conf"), "w") as f:
        f.write("[store]\npath = store\nshm_key = 2147483632\n")
    p = t.run([GOVMAILCTL, "-c", os.path.join(c.dir, "bad.conf"), "ls",
               f"a@{D}"])
    t.ok(p.returncode != 0 and "shm_key" in p.stderr,
         "a key too large for the regions is refused", p.stderr)


for case in (in_shm, reboot, to_files_and_back, in_use, bad_key):
    t.run_case(case)
t.done()
