#!/usr/bin/env python3
"""[store] regions: the store's regions in System V shared memory (the
default) or in files.  Shared regions leave nothing behind when the last
process exits, and the mail is there at the next open (recovery); a
switch to files and back, and a damaged region file, lose nothing; a
switch while a daemon has the store open with the other kind is refused
with one clear line; without System V memory (an IPC namespace with a
tiny kernel.shmmax) the regions fall back to files; an explicit shm_key
works, a bad one or a bad regions value is refused."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from ctlenv import Ctl, GOVMAILCTL  # noqa: E402
from daemonenv import _as_user, workers_regions  # noqa: E402
from smtpdenv import Smtpd  # noqa: E402

t = Suite()
D = "city.example"
c = Ctl(t, "s")
region = os.path.join(c.store, "__db.001")


def conf(name, text):
    path = os.path.join(c.dir, name)
    with open(path, "w") as f:
        f.write("[store]\npath = store\n" + text)
    return path


FILES = conf("files.conf", "regions = files\n")
KEY = 0x47000000 + (os.getpid() & 0xffff) * 16
KEYED = conf("keyed.conf", f"shm_key = {KEY}\n")


def segments_of(key):
    """shmids of the segments still under key .. key + 15."""
    out = subprocess.run(["ipcs", "-m"], capture_output=True,
                         text=True).stdout
    return [int(f[1]) for f in (ln.split() for ln in out.splitlines())
            if len(f) > 1 and f[0].startswith("0x")
            and key <= int(f[0], 16) < key + 16]


def ls(path=None):
    p = t.run([GOVMAILCTL, "-c", path or c.conf, "ls", f"a@{D}"])
    c.ok(p, "ls")
    return [ln.split("\t")[3] for ln in p.stdout.splitlines()]


def deliver(i):
    c.must("deliver", f"a@{D}",
           input=f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())


def shared_by_default(t):
    c.must("domain", "add", D)
    c.ok(c.user(f"a@{D}", "citizen"), "user add")
    deliver(1)
    deliver(2)
    t.eq(os.path.getsize(region), 24,
         "__db.001 only refers to System V segments")
    t.eq(ls(), ["m1", "m2"],
         "after every process exited (segments released), the mail is "
         "there: the regions were made anew with recovery")
    deliver(3)
    c.ok(c.run("check"), "check")


def to_files_and_back(t):
    t.eq(ls(FILES), ["m1", "m2", "m3"], "switched to region files")
    t.ok(os.path.getsize(region) > 4096, "__db.001 is a region again")
    t.eq(ls(), ["m1", "m2", "m3"], "switched back to shared memory")
    t.eq(os.path.getsize(region), 24, "and it refers to segments again")
    with open(region, "w"):
        pass                    # cut short
    t.eq(ls(), ["m1", "m2", "m3"], "a damaged __db.001 is made anew")
    c.ok(c.run("check"), "check")


def keyed(t):
    t.eq(ls(KEYED), ["m1", "m2", "m3"], "an explicit shm_key")
    t.eq(segments_of(KEY), [], "its segments are gone with the process")


def ctl_argv(path):
    """govmailctl as the daemon's user (nobody when run as root)."""
    return _as_user() + [GOVMAILCTL, "-c", path]


def in_use(t):
    d = Smtpd(t, name="busy")
    d.ctl("domain", "add", D)
    d.user(f"b@{D}", "pw")
    d.start()
    t.eq(workers_regions(d), "shared",
         "the daemon's workers map System V segments")
    other = os.path.join(d.dir, "files.conf")
    with open(other, "w") as f:
        f.write("[store]\npath = store\nregions = files\n")
    p = t.run(ctl_argv(other) + ["ls", f"b@{D}"])
    lines = p.stderr.splitlines()
    t.ok(p.returncode == 75 and len(lines) >= 1 and
         "stop every process using the store" in lines[-1],
         "another kind of regions while in use: refused, exit 75",
         f"exit {p.returncode}\n{p.stderr}")
    p = t.run(ctl_argv(d.conf) + ["ls", f"b@{D}"])
    t.ok(p.returncode == 0, "the daemon's own kind joins meanwhile",
         p.stderr)
    d.stop()
    p = t.run(ctl_argv(other) + ["ls", f"b@{D}"])
    t.ok(p.returncode == 0, "once the daemon stopped, the switch works",
         p.stderr)


def no_sysv(t):
    """A kernel that cannot give the regions' segments (here an IPC
    namespace with kernel.shmmax at 1 MiB): region files, with a warning,
    and shared memory again once it can."""
    script = ("echo 1048576 > /proc/sys/kernel/shmmax && "
              f"exec {GOVMAILCTL} -c {c.conf} ls a@{D}")
    p = t.run(["unshare", "--ipc", "sh", "-c", script])
    if p.returncode != 0 and "not available" not in p.stderr:
        t.n += 1
        print(f"ok {t.n} - no System V memory: region files # SKIP cannot "
              f"make an IPC namespace here", flush=True)
        return
    t.ok(p.returncode == 0 and "System V shared memory is not available"
         in p.stderr and len(p.stdout.splitlines()) == 3,
         "no System V memory for the regions: region files, a warning, "
         "the mail", p.stdout + p.stderr)
    t.ok(os.path.getsize(region) > 4096, "__db.001 is a region file")
    t.eq(ls(), ["m1", "m2", "m3"], "shared memory again where there is some")
    t.eq(os.path.getsize(region), 24, "__db.001 refers to segments again")


def bad_values(t):
    for text, what in (("shm_key = 2147483632\n", "shm_key"),
                       ("regions = memory\n", "regions")):
        path = conf("bad.conf", text)
        p = t.run([GOVMAILCTL, "-c", path, "ls", f"a@{D}"])
        t.ok(p.returncode != 0 and what in p.stderr,
             f"a bad {what} is refused", p.stderr)


for case in (shared_by_default, to_files_and_back, keyed, in_use, no_sysv,
             bad_values):
    t.run_case(case)
t.done()
