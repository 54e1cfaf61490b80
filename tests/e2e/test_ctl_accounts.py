#!/usr/bin/env python3
"""govmailctl: command line, domains, accounts (every class), passwords,
aliases and lists, against a fresh store under the scratch folder: each
command's happy path and its errors (exit status, one line on stderr)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from ctlenv import (Ctl, GOVMAILCTL, USCC_OK, USCC_BAD,  # noqa: E402
                    RESIDENT_ID_OK, RESIDENT_ID_OK2, RESIDENT_ID_BAD)

t = Suite()
c = Ctl(t)
D = "city.gov.example"


def cmdline(t):
    p = t.run([GOVMAILCTL, "-h"])
    t.ok(p.returncode == 0 and "user add ADDRESS" in p.stdout
         and "deliver" in p.stdout, "-h lists the commands", p.stdout)
    p = c.run("user", "add", "-h")
    t.ok(p.returncode == 0 and p.stdout.startswith("usage: govmailctl user add"),
         "user add -h prints its usage line", p.stdout)
    c.fails(t.run([GOVMAILCTL]), 64, "no command")
    c.fails(c.run("frobnicate"), 64, "unknown command")
    c.fails(c.run("user", "frob"), 64, "unknown subcommand")
    c.fails(c.run("domain", "add"), 64, "missing argument")
    c.fails(c.run("domain", "add", "a.example", "b.example"), 64,
            "too many arguments")
    c.fails(c.run("domain", "list", "--bogus"), 64, "unknown option")
    c.fails(t.run([GOVMAILCTL, "-c"]), 64, "-c without a value")
    missing = os.path.join(t.tmp, "nope.conf")
    c.fails(t.run([GOVMAILCTL, "-c", missing, "domain", "list"]), 78,
            "missing configuration file")
    bad = os.path.join(t.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("[store]\nno_such_key = 1\n")
    c.fails(t.run([GOVMAILCTL, "-c", bad, "domain", "list"]), 78,
            "unknown configuration key")
    # $GOVMAIL_CONF is used without -c.
    p = t.run([GOVMAILCTL, "domain", "list"], env={"GOVMAIL_CONF": missing})
    c.fails(p, 78, "GOVMAIL_CONF names the file")
    t.ok("nope.conf" in p.stderr, "the error names $GOVMAIL_CONF's file",
         p.stderr)
    # A read-only command does not create a store.
    c.fails(c.run("domain", "list"), 69, "read command on a missing store")
    t.ok(not os.path.exists(os.path.join(c.store, "domains.db")),
         "a read-only command creates nothing")


def domains(t):
    c.must("domain", "add", D)
    c.must("domain", "add", "other.example")
    c.fails(c.run("domain", "add", D), 73, "domain add twice")
    c.fails(c.run("domain", "add", "x" * 254), 65, "domain of 254 bytes")
    c.fails(c.run("domain", "add", "bad domain"), 65, "domain with a space")
    c.fails(c.run("domain", "add", ""), 65, "empty domain")
    p = c.must("domain", "list")
    t.eq(p.stdout.split(), sorted([D, "other.example"]), "domain list")
    c.fails(c.run("domain", "del", "unknown.example"), 67,
            "domain del unknown")
    c.must("domain", "del", "other.example")
    p = c.must("domain", "list")
    t.eq(p.stdout.split(), [D], "domain del removed it")


def accounts(t):
    # citizen with a valid ID number (lower-case x accepted), verified
    p = c.user(f"zhang.san@{D}", "citizen", "--name", "Zhang San",
               "--resident-id", RESIDENT_ID_OK.lower(), "--verified")
    c.ok(p, "user add citizen with resident ID")
    p = c.must("user", "show", f"zhang.san@{D}")
    t.ok("class: citizen" in p.stdout and "name: Zhang San" in p.stdout
         and "identity-verified: yes" in p.stdout
         and "resident-id: recorded" in p.stdout, "user show fields",
         p.stdout)
    t.ok(RESIDENT_ID_OK not in p.stdout.upper(),
         "user show never prints the ID number", p.stdout)
    # the ID number is nowhere in the store's files in clear
    found = []
    for root, _, files in os.walk(c.store):
        for fn in files:
            with open(os.path.join(root, fn), "rb") as f:
                if RESIDENT_ID_OK.encode() in f.read():
                    found.append(fn)
    t.eq(found, [], "the resident ID number is not stored in clear")

    c.fails(c.user(f"zhang.san@{D}", "citizen"), 73, "user add twice")
    c.fails(c.user(f"ZHANG.SAN@{D.upper()}", "citizen"), 73,
            "user add twice, other case")
    c.fails(c.user(f"bad.id@{D}", "citizen", "--resident-id",
                   RESIDENT_ID_BAD), 65, "citizen with an invalid ID number")
    c.fails(c.run("user", "show", f"bad.id@{D}"), 67,
            "the refused citizen does not exist")
    c.fails(c.user(f"short.id@{D}", "citizen", "--resident-id",
                   RESIDENT_ID_OK[:17]), 65, "ID number of 17 characters")
    c.fails(c.user(f"nodomain@unknown.example", "citizen"), 67,
            "user add in an unknown domain")
    c.fails(c.run("user", "add", f"x@{D}", input="pw\n"), 64,
            "user add without --class")
    c.fails(c.user(f"x@{D}", "emperor"), 64, "unknown class")
    c.fails(c.user(f"x@{D}", "citizen", "--title", "Boss"), 64,
            "--title for a citizen")
    c.fails(c.user(f"x@{D}", "official", "--resident-id", RESIDENT_ID_OK2),
            64, "--resident-id for an official")
    c.fails(c.user("not-an-address", "citizen"), 65, "address without @")
    c.fails(c.user("a" * 65 + "@" + D, "citizen"), 65,
            "local part of 65 bytes")
    c.fails(c.user(f"x@{D}", "citizen", "--name", "bad\x1bname"), 65,
            "control character in --name")
    c.fails(c.user(f"x@{D}", "citizen", "--name", "n" * 257), 65,
            "--name of 257 bytes")
    c.fails(c.user(f"x@{D}", "citizen", "--quota-bytes", "10x"), 64,
            "malformed --quota-bytes")
    p = c.run("user", "add", f"x@{D}", "--class", "citizen",
              "--password", "hunter2")
    c.fails(p, 64, "there is no --password option (no abbreviations)")
    t.ok("hunter2" not in p.stderr, "... and the value is not echoed",
         p.stderr)
    p = c.run("user", "add", f"x@{D}", "--class", "citizen",
              "--passwd=hunter2")
    c.fails(p, 64, "unknown option with a value")
    t.ok("hunter2" not in p.stderr, "... and the value is not echoed",
         p.stderr)

    # legal person: USCC checked; --legacy-code accepts with a warning
    c.ok(c.user(f"greenriver@{D}", "legal-person", "--org",
                "Green River Technology Co., Ltd.", "--org-id", USCC_OK),
         "user add legal-person with a valid USCC")
    p = c.must("user", "show", f"greenriver@{D}")
    t.ok(f"org-id: {USCC_OK}" in p.stdout, "the USCC is shown", p.stdout)
    c.fails(c.user(f"badcode@{D}", "legal-person", "--org-id", USCC_BAD), 65,
            "legal person with a wrong check character")
    c.fails(c.run("user", "show", f"badcode@{D}"), 67,
            "the refused legal person does not exist")
    c.fails(c.user(f"nocode@{D}", "legal-person"), 64,
            "legal person without --org-id")
    c.fails(c.user(f"shortcode@{D}", "legal-person", "--legacy-code",
                   "--org-id", USCC_OK[:17]), 65,
            "--legacy-code does not excuse a wrong length")
    p = c.user(f"oldcode@{D}", "legal-person", "--org-id", USCC_BAD,
               "--org", "Old Code Trading", "--legacy-code")
    c.ok(p, "--legacy-code accepts a wrong check character")
    t.ok("legacy credit code" in p.stderr and len(p.stderr.splitlines())
         == 1, "... with a one-line warning", p.stderr)

    c.ok(c.user(f"li.wei@{D}", "official", "--name", "Li Wei", "--org",
                "Housing Bureau", "--title", "Officer"), "user add official")
    c.ok(c.user(f"notices@{D}", "department", "--org", "General Office",
                "--quota-bytes", "10M", "--quota-messages", "500"),
         "user add department with quotas")
    p = c.must("user", "show", f"notices@{D}")
    t.ok("quota-bytes: 10485760" in p.stdout
         and "quota-messages: 500" in p.stdout, "quotas stored", p.stdout)

    p = c.must("user", "list")
    rows = [ln.split("\t") for ln in p.stdout.splitlines()]
    got = {r[0].lower(): r[1] for r in rows}
    t.eq(got, {f"zhang.san@{D}": "citizen",
               f"greenriver@{D}": "legal-person",
               f"oldcode@{D}": "legal-person",
               f"li.wei@{D}": "official",
               f"notices@{D}": "department"}, "user list: address and class")
    c.fails(c.run("user", "list", "unknown.example"), 67,
            "user list of an unknown domain")
    c.fails(c.run("user", "show", f"nobody@{D}"), 67, "user show unknown")

    c.fails(c.run("domain", "del", D), 77, "domain del with accounts")
    c.must("user", "del", f"oldcode@{D}")
    c.fails(c.run("user", "show", f"oldcode@{D}"), 67, "user del removed it")
    c.fails(c.run("user", "del", f"oldcode@{D}"), 67, "user del twice")


def passwords(t):
    a = f"pw.user@{D}"
    c.ok(c.user(a, "citizen", password="first-password\n"),
         "password from stdin")
    p = c.run("user", "verify", a, input="first-password\n")
    c.ok(p, "user verify: right password")
    c.fails(c.run("user", "verify", a, input="wrong\n"), 77,
            "user verify: wrong password")
    c.fails(c.run("user", "verify", f"ghost@{D}", input="x\n"), 67,
            "user verify: unknown account")
    pwfile = os.path.join(t.tmp, "pw.txt")
    with open(pwfile, "w") as f:
        f.write("from-a-file\r\n")
    c.must("user", "passwd", a, "--password-file", pwfile,
           name="user passwd --password-file")
    c.ok(c.run("user", "verify", a, input="from-a-file"),
         "the new password works (CRLF stripped)")
    c.fails(c.run("user", "verify", a, input="first-password\n"), 77,
            "the old password does not")
    c.fails(c.run("user", "passwd", a, "--password-file",
                  os.path.join(t.tmp, "missing")), 66,
            "unreadable password file")
    c.fails(c.run("user", "passwd", a, input=""), 65, "empty password")
    c.fails(c.run("user", "passwd", a, input="\n"), 65,
            "password that is only a line end")
    c.fails(c.run("user", "passwd", a, input="a\0b\n"), 65,
            "password with a NUL byte")
    c.fails(c.run("user", "passwd", f"ghost@{D}", input="x\n"), 67,
            "user passwd: unknown account")
    c.must("user", "disable", a)
    c.fails(c.run("user", "verify", a, input="from-a-file"), 77,
            "a suspended account's password is refused")
    p = c.must("user", "show", a)
    t.ok("disabled: yes" in p.stdout, "user show: disabled", p.stdout)
    c.must("user", "enable", a)
    c.ok(c.run("user", "verify", a, input="from-a-file"),
         "user enable: the password works again")
    c.fails(c.run("user", "disable", f"ghost@{D}"), 67,
            "user disable: unknown account")
    c.must("user", "quota", a, "--quota-bytes", "2M",
           "--quota-messages", "7")
    p = c.must("user", "show", a)
    t.ok("quota-bytes: 2097152" in p.stdout and "quota-messages: 7"
         in p.stdout, "user quota sets both limits", p.stdout)
    c.fails(c.run("user", "quota", a, "--quota-bytes", "2M"), 64,
            "user quota needs both limits")
    c.fails(c.run("user", "quota", a, "--quota-bytes", "0",
                  "--quota-messages", "1"), 64, "user quota of 0 bytes")
    c.fails(c.run("user", "quota", f"ghost@{D}", "--quota-bytes", "1M",
                  "--quota-messages", "1"), 67, "user quota: unknown account")
    # STORE_PASSWORD_MAX = 1024: N-1 and N accepted, N+1 refused
    for n, code in ((1023, 0), (1024, 0), (1025, 65)):
        pw = "p" * n
        p = c.run("user", "passwd", a, input=pw + "\n")
        if code == 0:
            c.ok(p, f"password of {n} bytes accepted")
            c.ok(c.run("user", "verify", a, input=pw), f"... and it works")
        else:
            c.fails(p, code, f"password of {n} bytes")
    c.fails(c.user(f"long.pw@{D}", "citizen", password="p" * 5000), 65,
            "user add with a 5000-byte password")

    # The password is never in argv: what ps shows while govmailctl waits.
    secret = "Sup3r-Secret-In-Flight"
    proc = subprocess.Popen([GOVMAILCTL, "-c", c.conf, "user", "add",
                             f"ps.check@{D}", "--class", "citizen"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t.procs.append(proc)
    time.sleep(0.3)
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        argv = f.read()
    ps = t.run(["ps", "-ww", "-o", "args=", "-p", str(proc.pid)])
    out, err = proc.communicate(secret.encode() + b"\n", timeout=60)
    t.ok(proc.returncode == 0, "user add reading the password from a pipe",
         err)
    t.ok(b"ps.check@" in argv and secret.encode() not in argv,
         "the password is not in /proc/PID/cmdline", argv)
    t.ok("ps.check@" in ps.stdout and secret not in ps.stdout,
         "the password is not in ps output", ps.stdout)
    t.ok(secret.encode() not in out + err, "the password is never printed")
    c.ok(c.run("user", "verify", f"ps.check@{D}", input=secret),
         "the piped password works")


def limits(t):
    """The limits govmailctl checks itself, at N-1, N and N+1."""
    # STORE_LOCALPART_MAX = 64
    c.ok(c.user("l" * 63 + "@" + D, "citizen"), "local part of 63 bytes")
    c.ok(c.user("l" * 64 + "@" + D, "citizen"), "local part of 64 bytes")
    c.fails(c.user("l" * 65 + "@" + D, "citizen"), 65,
            "local part of 65 bytes")
    # STORE_DOMAIN_MAX = 253 (labels of at most 63)
    d253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    c.must("domain", "add", d253[1:], name="domain of 252 bytes")
    c.must("domain", "add", d253, name="domain of 253 bytes")
    c.fails(c.run("domain", "add", "e" + d253), 65, "domain of 254 bytes")
    # STORE_ADDRESS_MAX = 254: 64 + 1 + 189
    d189 = ".".join(["a" * 63, "b" * 63, "c" * 61])
    c.must("domain", "add", d189, name="domain of 189 bytes")
    c.ok(c.user("m" * 63 + "@" + d189, "citizen"), "address of 253 bytes")
    c.ok(c.user("m" * 64 + "@" + d189, "citizen"), "address of 254 bytes")
    c.fails(c.user("m" * 64 + "@e" + d189, "citizen"), 65,
            "address of 255 bytes")
    # STORE_TEXT_MAX = 256
    c.ok(c.user(f"n255@{D}", "citizen", "--name", "n" * 255),
         "--name of 255 bytes")
    c.ok(c.user(f"n256@{D}", "citizen", "--name", "n" * 256),
         "--name of 256 bytes")
    c.fails(c.user(f"n257@{D}", "citizen", "--name", "n" * 257), 65,
            "--name of 257 bytes")
    # STORE_MAILBOX_NAME_MAX = 255: a longer name is refused before the store
    c.fails(c.run("ls", f"n255@{D}", "x" * 255), 67, "ls of a 255-byte "
            "mailbox name that does not exist")
    c.fails(c.run("ls", f"n255@{D}", "x" * 256), 65,
            "ls of a 256-byte mailbox name")


def terminal(t):
    """On a terminal the password is asked twice, without echo."""
    import pty
    import select

    def session(address, answers):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(GOVMAILCTL, [GOVMAILCTL, "-c", c.conf, "user", "add",
                                  address, "--class", "citizen"])
        out = b""
        for answer in answers:
            while b"Password" not in out.split(b"\n")[-1] or \
                    not out.rstrip().endswith(b":"):
                r, _, _ = select.select([fd], [], [], 30)
                if not r:
                    break
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            out += b"\n"   # marks where an answer went
            os.write(fd, answer.encode() + b"\n")
        while True:
            r, _, _ = select.select([fd], [], [], 30)
            if not r:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        for _ in range(300):    # bounded: a stuck child is killed
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode("utf-8",
                                                             "replace")

    code, out = session(f"tty.user@{D}", ["Tty-Secret-1", "Tty-Secret-1"])
    t.eq(code, 0, "user add on a terminal: asked twice")
    t.ok(out.count("Password") == 2, "two prompts", out)
    t.ok("Tty-Secret-1" not in out, "the terminal does not echo it", out)
    c.ok(c.run("user", "verify", f"tty.user@{D}", input="Tty-Secret-1"),
         "the password typed on the terminal works")
    code, out = session(f"tty.bad@{D}", ["Tty-Secret-1", "Tty-Secret-2"])
    t.eq(code, 65, "two different answers are refused")
    t.ok("do not match" in out, "... saying so", out)
    c.fails(c.run("user", "show", f"tty.bad@{D}"), 67,
            "... and no account was made")


def aliases(t):
    c.must("alias", "add", f"info@{D}", f"li.wei@{D}")
    c.must("alias", "add", f"info@{D}", f"notices@{D}")
    c.must("alias", "add", f"info@{D}", "someone@remote.example")
    p = c.must("alias", "members", f"info@{D}")
    lines = p.stdout.splitlines()
    t.eq(sorted(x.lower() for x in lines if "\t" not in x),
         sorted([f"li.wei@{D}", f"notices@{D}"]), "alias members: local")
    t.ok("someone@remote.example\t(remote)" in lines,
         "alias members: remote marked", p.stdout)
    c.fails(c.run("alias", "add", f"zhang.san@{D}", f"li.wei@{D}"), 73,
            "an account cannot become an alias")
    c.fails(c.run("alias", "add", f"info@{D}", "not an address"), 65,
            "alias target with a space")
    c.fails(c.run("alias", "members", f"zhang.san@{D}"), 67,
            "alias members of an account")
    c.fails(c.run("alias", "members", f"none@{D}"), 67,
            "alias members of nothing")
    c.must("alias", "del", f"info@{D}", "someone@remote.example")
    p = c.must("alias", "members", f"info@{D}")
    t.ok("remote.example" not in p.stdout, "alias del TARGET", p.stdout)
    c.must("alias", "del", f"info@{D}")
    c.fails(c.run("alias", "members", f"info@{D}"), 67,
            "alias del removed the alias")
    c.fails(c.run("alias", "del", f"info@{D}"), 67, "alias del twice")


def lists(t):
    L = f"all-citizens@{D}"
    c.must("list", "add", L, "--notice")
    c.fails(c.run("list", "add", L), 73, "list add twice")
    c.must("list", "member", "add", L, f"class:citizen@{D}")
    c.must("list", "member", "add", L, f"li.wei@{D}")
    c.must("list", "poster", "add", L, f"notices@{D}")
    p = c.must("list", "members", L)
    t.eq(sorted(p.stdout.lower().splitlines()),
         sorted([f"class:citizen@{D}", f"li.wei@{D}"]), "list members")
    p = c.must("list", "posters", L)
    t.eq(p.stdout.lower().splitlines(), [f"notices@{D}"], "list posters")
    p = c.must("list", "members", L, "--expand")
    got = sorted(p.stdout.lower().splitlines())
    t.ok(f"zhang.san@{D}" in got and f"li.wei@{D}" in got
         and f"greenriver@{D}" not in got, "list members --expand", got)
    c.fails(c.run("list", "member", "add", L), 64, "list member add "
            "without a selector")
    c.fails(c.run("list", "members", f"nolist@{D}"), 67,
            "list members of an unknown list")
    c.fails(c.run("list", "poster", "add", L, "no at sign"), 65,
            "poster that is not an address")
    c.must("list", "member", "del", L, f"li.wei@{D}")
    p = c.must("list", "members", L)
    t.eq(p.stdout.lower().splitlines(), [f"class:citizen@{D}"],
         "list member del")
    c.must("list", "poster", "del", L, f"notices@{D}")
    p = c.must("list", "posters", L)
    t.eq(p.stdout, "", "list poster del")
    c.must("list", "del", L)
    c.fails(c.run("list", "members", L), 67, "list del removed it")


for case in (cmdline, domains, accounts, passwords, limits, terminal,
             aliases, lists):
    t.run_case(case)
t.done()
