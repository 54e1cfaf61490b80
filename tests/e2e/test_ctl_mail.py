#!/usr/bin/env python3
"""govmailctl deliver, ls, cat, mailbox list and stats: three messages to
several recipients read back byte for byte, aliases and lists expanded,
quota refusal, size limit, escaping of client text, single-instance
storage."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from ctlenv import Ctl  # noqa: E402

t = Suite()
c = Ctl(t)
D = "city.gov.example"
A, B, C = f"alice@{D}", f"bob@{D}", f"carol@{D}"
Q = f"small@{D}"


def msg(subject, body, eol="\r\n"):
    return (f"From: notices@{D}{eol}To: citizens@{D}{eol}"
            f"Subject: {subject}{eol}Message-ID: <{abs(hash(body))}@x>{eol}"
            f"{eol}{body}{eol}").encode()


M1 = msg("Water bill for November", "Amount due: 42.00 CNY")
M2 = msg("Housing policy update", "New rules from 1 December." * 20)
M3 = msg("Job fair", "Saturday, city hall.")


def stats(t):
    p = c.must("stats")
    return {k: int(v) for k, v in
            (ln.split(": ", 1) for ln in p.stdout.splitlines())}


def setup(t):
    c.must("domain", "add", D)
    for a in (A, B, C):
        c.ok(c.user(a, "citizen"), f"user add {a}")
    c.ok(c.user(Q, "citizen", "--quota-messages", "2"), "user add with quota")


def deliver_three(t):
    before = stats(t)
    p = c.run("deliver", A, B, C, input=M1)
    c.ok(p, "deliver to three recipients")
    t.eq(sorted(p.stdout.lower().splitlines()),
         [f"{a}: delivered uid=1" for a in (A, B, C)],
         "one 'delivered' line per recipient")
    after = stats(t)
    t.eq(after["messages"] - before["messages"], 3, "three index records")
    t.eq(after["blobs"] - before["blobs"], 1,
         "one stored content for three recipients")
    c.must("deliver", A, B, input=M2)
    c.must("deliver", A, input=M3)

    p = c.must("ls", A)
    want = [f"1\t{len(M1)}\t()\tWater bill for November",
            f"2\t{len(M2)}\t()\tHousing policy update",
            f"3\t{len(M3)}\t()\tJob fair"]
    t.eq(p.stdout.splitlines(), want, "ls: UID, size, flags, subject")
    p = c.must("ls", B, "INBOX")
    t.eq(p.stdout.splitlines(), want[:2], "ls ADDRESS INBOX")
    p = c.must("ls", C)
    t.eq(p.stdout.splitlines(), want[:1], "ls of the third recipient")
    p = c.must("ls", C, "Sent")
    t.eq(p.stdout, "", "ls of an empty mailbox")

    for addr, uid, m in ((A, 1, M1), (A, 2, M2), (A, 3, M3), (B, 2, M2),
                         (C, 1, M1)):
        p = cat_raw(addr, "INBOX", uid)
        t.ok(p.returncode == 0 and p.stdout == m,
             f"cat {addr} {uid} is byte-exact", p.stderr)

    p = c.must("mailbox", "list", A)
    inbox = [ln for ln in p.stdout.splitlines() if ln.startswith("INBOX\t")]
    t.ok(len(inbox) == 1 and "messages=3" in inbox[0]
         and f"size={len(M1) + len(M2) + len(M3)}" in inbox[0]
         and "special-use=inbox" in inbox[0], "mailbox list: INBOX",
         p.stdout)
    names = sorted(ln.split("\t")[0] for ln in p.stdout.splitlines())
    t.eq(names, sorted(["INBOX", "Sent", "Drafts", "Trash", "Junk",
                        "Archive"]), "mailbox list: the special mailboxes")
    p = c.must("user", "show", A)
    t.ok(f"used-messages: 3" in p.stdout, "account usage counts 3", p.stdout)


def c_bin():
    from ctlenv import GOVMAILCTL
    return GOVMAILCTL


def cat_raw(addr, box, uid):
    import subprocess
    return subprocess.run([c_bin(), "-c", c.conf, "cat", addr, box,
                           str(uid)], capture_output=True, timeout=60)


def line_ends(t):
    lf = msg("LF only", "bare line feeds", eol="\n")
    c.must("deliver", B, input=lf)
    p = cat_raw(B, "INBOX", 3)
    t.eq(p.stdout, lf.replace(b"\n", b"\r\n"), "bare LF becomes CRLF")
    crlf = msg("Mixed", "line", eol="\r\n") + b"tail\n"
    c.must("deliver", B, input=crlf)
    p = cat_raw(B, "INBOX", 4)
    t.eq(p.stdout, crlf[:-1] + b"\r\n", "CRLF kept, a bare LF fixed")


def escaping(t):
    nasty = (b"From: x@y\r\nSubject: evil\x1b[31m red\x07 \\ tab\there\r\n"
             b"\r\nbody\r\n")
    c.must("deliver", C, input=nasty)
    p = cat_raw(C, "INBOX", 2)
    t.eq(p.stdout, nasty, "cat prints the raw bytes")
    p = c.must("ls", C)
    line = p.stdout.splitlines()[-1]
    t.ok("\x1b" not in p.stdout and "\x07" not in p.stdout,
         "ls escapes control characters of the subject", repr(line))
    t.ok("evil" in line and "[31m red" in line,
         "... and keeps the printable text", repr(line))
    t.ok("\\\\ tab" in line, "a backslash is printed as \\\\", repr(line))
    t.eq(len(line.split("\t")), 4, "a tab in a subject cannot add a column")
    utf8 = ("From: x@y\r\nSubject: =?UTF-8?B?"
            "5biC5rCR6YKu566x?=\r\n\r\nbody\r\n").encode()
    c.must("deliver", C, input=utf8)
    p = c.must("ls", C)
    t.ok(p.stdout.splitlines()[-1].endswith("\t市民邮箱"),
         "an encoded UTF-8 subject is printed decoded", p.stdout)


def failures(t):
    p = c.run("deliver", A, f"ghost@{D}", input=M3)
    c.fails(p, 67, "deliver to one unknown recipient")
    t.ok(f"ghost@{D}" in p.stderr, "the error names the recipient", p.stderr)
    t.ok(f"{A}: delivered uid=4" in p.stdout.lower(),
         "the known recipient still got it", p.stdout)
    c.fails(c.run("deliver", "nobody@elsewhere.example", input=M3), 67,
            "deliver to a non-local domain")
    c.fails(c.run("deliver", A, input=b""), 65, "empty message")
    big = msg("big", "x" * (64 * 1024))
    c.fails(c.run("deliver", A, input=big), 65,
            "message over [limits] message_size")
    p = c.run("ls", A)
    t.eq(len(p.stdout.splitlines()), 4, "refused messages left no trace")
    c.fails(c.run("deliver", input=M1), 64, "deliver without a recipient")
    c.fails(c.run("deliver", "bad address", input=M1), 65,
            "deliver to a malformed address")
    c.fails(c.run("ls", f"ghost@{D}"), 67, "ls of an unknown account")
    c.fails(c.run("ls", A, "NoSuchBox"), 67, "ls of an unknown mailbox")
    c.fails(c.run("cat", A, "INBOX", "99"), 67, "cat of an unknown UID")
    c.fails(c.run("cat", A, "INBOX", "abc"), 64, "cat with a bad UID")
    c.fails(c.run("cat", A, "INBOX", "0"), 64, "cat UID 0")
    c.fails(c.run("cat", A, "INBOX", "4294967296"), 64, "cat UID 2^32")
    c.fails(c.run("cat", A, "INBOX"), 64, "cat without UID")
    c.fails(c.run("mailbox", "list", f"ghost@{D}"), 67,
            "mailbox list of an unknown account")


def quota(t):
    c.must("deliver", Q, input=M1)
    c.must("deliver", Q, input=M2)
    p = c.run("deliver", Q, A, input=M3)
    c.fails(p, 75, "delivery over the message quota")
    t.ok("quota" in p.stderr.lower(), "the error says quota", p.stderr)
    t.ok(f"{A}: delivered" in p.stdout.lower(),
         "the other recipient still got it", p.stdout)
    p = c.must("ls", Q)
    t.eq(len(p.stdout.splitlines()), 2, "nothing over quota was stored")


def aliases_lists(t):
    c.must("alias", "add", f"info@{D}", A)
    c.must("alias", "add", f"info@{D}", B)
    c.must("list", "add", f"everyone@{D}")
    c.must("list", "member", "add", f"everyone@{D}", f"domain:{D}")
    c.must("list", "poster", "add", f"everyone@{D}", C)
    na = len(c.must("ls", A).stdout.splitlines())
    nb = len(c.must("ls", B).stdout.splitlines())
    p = c.run("deliver", f"info@{D}", A, input=M3)
    c.ok(p, "deliver to an alias and one of its targets")
    t.eq(sorted(p.stdout.lower().splitlines()),
         [f"{A}: delivered uid={na + 1}", f"{B}: delivered uid={nb + 1}"],
         "the alias is expanded; a recipient named twice gets one copy")
    c.fails(c.run("deliver", "--from", A, f"everyone@{D}", input=M1), 77,
            "deliver --from a sender who may not post")
    p = c.run("deliver", "--from", C, f"everyone@{D}", input=M1)
    c.fails(p, 75, "deliver --from an allowed poster, one member over quota")
    t.ok(Q in p.stderr.lower(), "the error names the full account", p.stderr)
    t.eq(len(p.stdout.splitlines()), 3, "the list reached every other "
         "account of the domain")
    c.must("alias", "add", f"fwd@{D}", "someone@remote.example")
    p = c.run("deliver", f"fwd@{D}", input=M1)
    c.fails(p, 69, "deliver to an alias with a remote target")


for case in (setup, deliver_three, line_ends, escaping, failures, quota,
             aliases_lists):
    t.run_case(case)
t.done()
