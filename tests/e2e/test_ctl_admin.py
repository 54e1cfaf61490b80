#!/usr/bin/env python3
"""govmailctl check, check --repair, check --contents, backup, restore and
stats: check passes on a healthy store and finds damage inflicted with
Berkeley DB's own db_load (an account's usage counter falsified, a byte of
a message's stored contents flipped, while nobody has the store open); a
backup restored under a new path gives identical ls and cat."""
import hashlib
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from ctlenv import Ctl, GOVMAILCTL  # noqa: E402

t = Suite()
c = Ctl(t, "live")
D = "city.gov.example"
USERS = [f"u{i}@{D}" for i in range(3)]
DB_LOAD = shutil.which("db5.3_load") or shutil.which("db_load")


def message(i):
    return (f"From: notices@{D}\r\nSubject: notice {i}\r\n\r\n"
            f"body {i}\r\n" * (i + 1)).encode()


def cat(ctl, addr, uid):
    return subprocess.run([GOVMAILCTL, "-c", ctl.conf, "cat", addr, "INBOX",
                           str(uid)], capture_output=True, timeout=60).stdout


def setup(t):
    c.must("domain", "add", D)
    for u in USERS:
        c.ok(c.user(u, "citizen"), f"user add {u}")
    for i in range(3):
        c.must("deliver", *USERS[: i + 1], input=message(i))


def healthy(t):
    p = c.run("check")
    c.ok(p, "check on a healthy store")
    t.eq(p.stdout, "store: ok\n", "check says ok")
    p = c.must("stats")
    st = dict(ln.split(": ", 1) for ln in p.stdout.splitlines())
    t.eq(st.get("domains"), "1", "stats: domains")
    t.eq(st.get("accounts"), "3", "stats: accounts")
    t.eq(st.get("messages"), "6", "stats: messages (index records)")
    t.eq(st.get("blobs"), "3", "stats: one content per distinct message")
    c.fails(c.run("check", "extra"), 64, "check with an argument")
    c.fails(c.run("stats", "extra"), 64, "stats with an argument")


def set_usage(ctl, address, used_bytes, used_messages):
    """Overwrite an account's usage record (u32 id -> u64 bytes, u64
    messages, big-endian) with db_load, while nobody has the store open."""
    p = ctl.must("user", "show", address)
    acct_id = int(next(ln.split(": ")[1] for ln in p.stdout.splitlines()
                       if ln.startswith("id: ")))
    dump = ("VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n"
            f" {acct_id:08x}\n {used_bytes:016x}{used_messages:016x}\n"
            "DATA=END\n")
    return subprocess.run([DB_LOAD, "-h", ctl.store, "usage.db"],
                          input=dump.encode(), capture_output=True,
                          timeout=60)


def damage(t):
    if not t.ok(DB_LOAD is not None, "db_load is installed (db5.3-util)"):
        return
    p = set_usage(c, USERS[0], 12345, 99)
    t.ok(p.returncode == 0, "usage record falsified with db_load", p.stderr)
    p = c.must("user", "show", USERS[0])
    t.ok("used-messages: 99" in p.stdout, "the damage is visible", p.stdout)
    p = c.run("check")
    c.fails(p, 1, "check finds the damage")
    t.ok(any(ln.startswith("damage: ") for ln in p.stdout.splitlines()),
         "check names the problem", p.stdout)
    p = c.run("check", "--repair")
    c.fails(p, 1, "check --repair reports what it fixed")
    t.ok(any(ln.startswith("repaired: ") for ln in p.stdout.splitlines()),
         "check --repair names the problem", p.stdout)
    p = c.run("check")
    c.ok(p, "check after repair passes")
    p = c.must("user", "show", USERS[0])
    t.ok("used-messages: 3" in p.stdout, "usage repaired from the records",
         p.stdout)


def set_chunk(ctl, stored, value):
    """Overwrite chunk 0 of the content whose bytes are stored (its key is
    their BLAKE2b-256, its file chunks-XX.db by the key's first byte)."""
    key = hashlib.blake2b(stored, digest_size=32).digest()
    dump = ("VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n"
            f" {key.hex()}00000000\n {value.hex()}\nDATA=END\n")
    return subprocess.run([DB_LOAD, "-h", ctl.store,
                           f"chunks-{key[0] % 16:02x}.db"],
                          input=dump.encode(), capture_output=True,
                          timeout=60)


def bit_rot(t):
    """A flipped byte in a message's contents (what a failing disk or a
    damaged backup does): plain check cannot see it, --contents does."""
    if DB_LOAD is None:
        return
    p = c.run("check", "--contents")
    c.ok(p, "check --contents on a healthy store")
    t.eq(p.stdout, "store: ok\n", "check --contents says ok")
    stored = cat(c, USERS[2], 1)
    t.ok(stored.startswith(f"From: notices@{D}".encode()), "cat gives the "
         "stored message", stored[:80])
    rotten = bytearray(stored)
    rotten[-3] ^= 0x01
    # method byte 0: the chunk's bytes as they are (contents are framed)
    p = set_chunk(c, stored, b"\x00" + bytes(rotten))
    t.ok(p.returncode == 0, "a byte of the contents flipped with db_load",
         p.stderr)
    t.eq(cat(c, USERS[2], 1), bytes(rotten), "the damage is served by cat")
    c.ok(c.run("check"), "check without --contents does not read contents")
    p = c.run("check", "--contents")
    c.fails(p, 1, "check --contents finds the damage")
    key = hashlib.blake2b(stored, digest_size=32).hexdigest()[:16]
    t.eq(p.stdout, f"damage: blob {key}: contents do not match the blob "
         "key\n", "check --contents names the content and the reason")
    p = c.run("check", "--contents", "--repair")
    c.fails(p, 1, "check --contents --repair cannot mend contents")
    t.ok(p.stdout.startswith("damage: blob ") and "repaired" not in
         p.stdout, "... and says damage, not repaired", p.stdout)
    t.ok("0 repaired; the rest needs a backup" in p.stderr,
         "... and its summary says so", p.stderr)
    p = set_chunk(c, stored, b"\x00" + stored)
    c.ok(c.run("check", "--contents"), "contents put back: check passes")


def backup_restore(t):
    bdir = os.path.join(t.tmp, "backup")
    p = c.run("backup", bdir)
    c.ok(p, "backup into a new folder")
    t.ok(os.path.isdir(bdir) and len(os.listdir(bdir)) > 0,
         "the backup folder holds files")
    c.fails(c.run("backup", bdir), 73, "backup into a non-empty folder")
    c.fails(c.run("backup"), 64, "backup without a folder")

    r = Ctl(t, "restored")
    p = r.run("restore", bdir)
    r.ok(p, "restore into a new store path")
    for u in USERS:
        t.eq(r.run("ls", u).stdout, c.run("ls", u).stdout,
             f"ls {u} is identical after restore")
    t.eq(cat(r, USERS[0], 3), cat(c, USERS[0], 3), "cat is identical")
    t.eq(cat(r, USERS[0], 3), message(2), "... and byte-exact")
    r.ok(r.run("check"), "check passes on the restored store")
    t.eq(r.run("user", "list").stdout, c.run("user", "list").stdout,
         "the accounts are identical")
    # The restored store is a working store of its own.
    r.must("deliver", USERS[1], input=message(7))
    t.eq(len(r.run("ls", USERS[1]).stdout.splitlines()), 3,
         "the restored store takes deliveries")
    t.eq(len(c.run("ls", USERS[1]).stdout.splitlines()), 2,
         "... and the original is untouched")

    missing = Ctl(t, "missing")
    p = missing.run("restore", os.path.join(t.tmp, "no-such-backup"))
    t.ok(p.returncode != 0 and len(p.stderr.splitlines()) == 1,
         "restore from a missing folder: one error line", p.stderr)


for case in (setup, healthy, damage, bit_rot, backup_restore):
    t.run_case(case)
t.done()
