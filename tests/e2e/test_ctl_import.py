#!/usr/bin/env python3
"""govmailctl user import and user hash: accounts of every class from a
CSV file (UTF-8 and GB18030), password hashes that log in, refused rows
named by their line, a rerun that finishes an interrupted import, and an
import of 20,000 citizens, against a fresh store."""
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
BIG = 20000


def write(name, text, encoding="utf-8"):
    path = os.path.join(t.tmp, name)
    with open(path, "wb") as f:
        f.write(text.encode(encoding))
    return path


def summary(p):
    """(added, present, refused) from the summary line."""
    for line in p.stdout.splitlines():
        if line.startswith("added "):
            w = line.replace(",", "").split()
            return int(w[1]), int(w[4]), int(w[6])
    return None


def hash_of(password):
    p = c.run("user", "hash", input=password + "\n")
    c.ok(p, "user hash")
    return p.stdout.strip()


def setup(t):
    c.must("domain", "add", D)
    p = c.run("user", "hash", "-h")
    t.ok(p.returncode == 0 and "user hash" in p.stdout, "user hash -h")
    h = hash_of("pw-one")
    t.ok(h.startswith("$argon2id$v=19$m=8192,t=1,p=1$"),
         "user hash: Argon2id with the configured limits", h)
    t.ok(hash_of("pw-one") != h, "user hash: a new salt each time")


def classes(t):
    h1, h2 = hash_of("pw-one"), hash_of("pw-two")
    path = write("ok.csv", (
        "address,class,name,org,org_id,title,resident_id,verified,"
        "legacy_code,quota_bytes,quota_messages,password_hash\n"
        f"zhang@{D},citizen,张伟,,,,{RESIDENT_ID_OK.lower()},yes,,,,"
        f"\"{h1}\"\n"
        f"li.ming@{D},official,Li Ming,Housing Bureau,CN-SH,Director,,,,,,"
        f"\"{h2}\"\n"
        f"housing@{D},department,,Housing Bureau,,,,,,2G,5000,\n"
        f"acme@{D},legal-person,,ACME Trading,{USCC_OK.lower()},,,,,,,\n"
        f"old@{D},legal-person,,Old Co,{USCC_BAD},,,,true,,,\n"
        f"wang@{D},citizen,\"Wang, \"\"Fang\"\"\",,,,,,,,,\n"))
    p = c.run("user", "import", path)
    c.ok(p, "import of every class")
    t.eq(summary(p), (6, 0, 0), "summary: 6 added")
    p = c.must("user", "show", f"zhang@{D}")
    t.ok("class: citizen" in p.stdout and "name: 张伟" in p.stdout
         and "identity-verified: yes" in p.stdout
         and "resident-id: recorded" in p.stdout, "citizen's fields",
         p.stdout)
    p = c.must("user", "show", f"li.ming@{D}")
    t.ok("class: official" in p.stdout and "title: Director" in p.stdout
         and "org-id: CN-SH" in p.stdout, "official's fields", p.stdout)
    p = c.must("user", "show", f"housing@{D}")
    t.ok("2147483648" in p.stdout and "5000" in p.stdout,
         "department's quota", p.stdout)
    p = c.must("user", "show", f"acme@{D}")
    t.ok(f"org-id: {USCC_OK}" in p.stdout, "USCC upper-cased", p.stdout)
    c.must("user", "show", f"old@{D}")
    p = c.must("user", "show", f"wang@{D}")
    t.ok('name: Wang, "Fang"' in p.stdout, "quoted fields", p.stdout)
    # The hashes log in; an account without one does not.
    c.ok(c.run("user", "verify", f"zhang@{D}", input="pw-one\n"),
         "imported hash: right password")
    c.fails(c.run("user", "verify", f"zhang@{D}", input="pw-two\n"), 77,
            "imported hash: wrong password")
    c.ok(c.run("user", "verify", f"li.ming@{D}", input="pw-two\n"),
         "second imported hash")
    c.fails(c.run("user", "verify", f"housing@{D}", input="x\n"), 77,
            "no password_hash: no log-in")
    p = c.must("user", "list", D)
    t.eq(len(p.stdout.splitlines()), 6, "user list shows the six")


def gb18030(t):
    text = ("address,class,name\n"
            f"chen@{D},citizen,陈静\n"
            f"zhao@{D},citizen,赵磊\n")
    path = write("gb.csv", text, "gb18030")
    p = c.run("user", "import", path)
    c.ok(p, "GB18030 file (auto)")
    t.eq(summary(p), (2, 0, 0), "GB18030: 2 added")
    p = c.must("user", "show", f"chen@{D}")
    t.ok("name: 陈静" in p.stdout, "GB18030 name converted", p.stdout)
    p = c.run("user", "import", "--charset", "utf-8", path)
    c.fails(p, 65, "GB18030 file read as --charset utf-8")
    p = c.run("user", "import", "--charset", "latin1", path)
    c.fails(p, 65, "unknown charset")


def refusals(t):
    rows = [
        f"ok1@{D},citizen,,,",                          # line 2: added
        f"bad1@{D},mayor,,,",                           # 3 class
        f"bad2@{D},citizen,,{RESIDENT_ID_BAD},",        # 4 ID check digit
        f"bad3@{D},official,,{RESIDENT_ID_OK2},",       # 5 ID not official
        f"bad4@{D},legal-person,,,",                    # 6 no USCC
        f"bad5@nowhere.example,citizen,,,",             # 7 no such domain
        f"not-an-address,citizen,,,",                   # 8 address
        f"bad6@{D},citizen,,,$2y$10$abcdefghijklmnopqrstuv",  # 9 bcrypt
        f"bad7@{D},citizen,,,$argon2id$garbage",        # 10 bad Argon2
        f"zhang@{D},citizen,,,",                        # 11 present
        f"ok2@{D},citizen,,,",                          # 12 added
    ]
    path = write("mixed.csv", "address,class,org_id,resident_id,"
                 "password_hash\n" + "\n".join(rows) + "\n")
    p = c.run("user", "import", path)
    t.eq(p.returncode, 65, "refused rows: exit 65")
    t.eq(summary(p), (2, 1, 8), "summary: 2 added, 1 present, 8 refused")
    err = p.stderr.splitlines()
    t.eq(len(err), 8, "one stderr line per refused row")
    want = {3: "unknown class", 4: "MOD 11-2", 5: "citizen class",
            6: "org_id", 7: "nowhere.example", 8: "not an address",
            9: "Argon2", 10: "Argon2"}
    for n, word in want.items():
        line = [e for e in err if f"user import: line {n}:" in e]
        t.ok(len(line) == 1 and word in line[0],
             f"line {n} refused naming '{word}'", "\n".join(err))
    for a in ("ok1", "ok2"):
        c.must("user", "show", f"{a}@{D}")
    c.fails(c.run("user", "show", f"bad2@{D}"), 67,
            "a refused row made no account")
    # An alias's address is refused, not counted as present.
    c.must("alias", "add", f"info@{D}", f"ok1@{D}")
    p = c.run("user", "import", write("alias.csv",
                                      f"address,class\ninfo@{D},citizen\n"))
    t.ok(p.returncode == 65 and "in use" in p.stderr,
         "alias address refused", p.stdout + p.stderr)
    t.eq(summary(p), (0, 0, 1), "alias: refused")
    p = c.run("user", "import", write(
        "flag.csv", f"address,class,verified\nflag1@{D},citizen,maybe\n"
        f"flag2@{D},citizen,on\n"))
    t.ok(p.returncode == 65 and "line 2: verified: not a boolean"
         in p.stderr, "a yes/no column with 'maybe' refused", p.stderr)
    t.eq(summary(p), (1, 0, 1), "yes/no column: 1 added, 1 refused")
    p = c.must("user", "show", f"flag2@{D}")
    t.ok("identity-verified: yes" in p.stdout, "'on' is yes", p.stdout)
    # Another citizen's resident ID number: refused, not "present".
    p = c.run("user", "import", write(
        "rid.csv", f"address,class,resident_id\n"
        f"twin@{D},citizen,{RESIDENT_ID_OK}\n"))
    t.ok(p.returncode == 65 and "another account" in p.stderr,
         "a resident ID number twice refused", p.stdout + p.stderr)
    t.eq(summary(p), (0, 0, 1), "resident ID twice: refused")


def bad_files(t):
    c.fails(c.run("user", "import"), 64, "missing FILE")
    c.fails(c.run("user", "import", os.path.join(t.tmp, "none.csv")), 66,
            "unreadable file")
    c.fails(c.run("user", "import", write("e.csv", "")), 65, "empty file")
    c.fails(c.run("user", "import", write("u.csv", "address,klass\n")), 65,
            "unknown column")
    c.fails(c.run("user", "import", write("n.csv", "address,name\n")), 65,
            "class column missing")
    # A syntax error stops the import at its line; what came before stays.
    p = c.run("user", "import", write(
        "s.csv", f"address,class\nsyn1@{D},citizen\n"
        f"syn2@{D},citizen,extra\nsyn3@{D},citizen\n"))
    t.eq(p.returncode, 65, "wrong field count: exit 65")
    t.ok("line 3" in p.stderr and "number of fields" in p.stderr,
         "the error names line 3", p.stderr)
    c.must("user", "show", f"syn1@{D}")
    c.fails(c.run("user", "show", f"syn3@{D}"), 67,
            "nothing after the bad line")
    # A quoted field over two lines: the line numbers stay right.
    p = c.run("user", "import", write(
        "q.csv", f"address,class,name\nq1@{D},citizen,\"two\nlines\"\n"
        f"q2@{D},mayor,\n"))
    t.ok(p.returncode == 65 and "line 4:" in p.stderr,
         "line numbers count the lines inside quotes", p.stderr)
    p = c.run("user", "import", write(
        "uq.csv", f"address,class\nuq1@{D},citizen\nuq2@{D},\"citi\nzen\n"))
    t.ok(p.returncode == 65 and "line 3:" in p.stderr
         and "unterminated" in p.stderr,
         "an unterminated quote is named by its record's line", p.stderr)


def big(t):
    """BIG citizens; killed part-way, then run again: all there once."""
    lines = ["address,class,name"]
    lines += [f"c{i}@{D},citizen,Citizen {i}" for i in range(BIG)]
    path = write("big.csv", "\n".join(lines) + "\n")
    proc = subprocess.Popen([GOVMAILCTL, "-c", c.conf, "user", "import",
                             path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Wait until some accounts are in, then kill it (bounded wait).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        p = c.run("user", "show", f"c{BIG // 20}@{D}")
        if p.returncode == 0:
            break
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    t.ok(True, f"first import {'killed part-way' if killed else 'ended'}")
    p = c.run("user", "import", path, timeout=600)
    c.ok(p, "second import")
    s = summary(p)
    t.ok(s is not None and s[0] + s[1] == BIG and s[2] == 0,
         f"second import: added + present = {BIG}", p.stdout)
    if killed:
        t.ok(s[1] > 0, "second import found the first one's accounts",
             p.stdout)
    p = c.must("user", "list", D)
    n = sum(1 for ln in p.stdout.splitlines() if ln.startswith("c")
            and ln.split("@")[0][1:].isdigit())
    t.eq(n, BIG, f"user list: {BIG} imported citizens, each once")
    p = c.must("check")
    t.ok("damage" not in p.stdout.lower() or "no damage" in
         p.stdout.lower(), "check: the store is consistent", p.stdout)


for case in (setup, classes, gb18030, refusals, bad_files, big):
    t.run_case(case)
t.done()
