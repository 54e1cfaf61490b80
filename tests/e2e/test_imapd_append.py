#!/usr/bin/env python3
"""govmail-imapd APPEND: a 20 MB message over TLS streams into the store
(the worker's memory does not grow by the message while other sessions
keep being served), quota and APPENDLIMIT are checked before "+" (and a
refused LITERAL+ is read and dropped, then NO), MULTIAPPEND (RFC 3502)
is all or nothing with an APPENDUID set, and with encryption at rest the
spool is a memfd, never a file on disk."""
import os
import re
import subprocess
import time

from tap import Suite
from imapdenv import IMAPD, Imapd, Raw

t = Suite()
BIG = 20 * 1024 * 1024
d = Imapd(t, message_size="21M")
A = "alice@city.example"
B = "bob@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.user(B, "bob-pw", "--quota-bytes", "100K", "--quota-messages", "50")
d.start()


def worker_pid():
    for _ in range(50):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid",
                              str(d.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.1)
    return None


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1])
    return 0


def private_kib(pid):
    """RssAnon + RssShmem less the store's shared regions (System V
    segments, shared by every process of the store): what this worker
    holds for itself, a memfd spool included."""
    sysv = 0
    with open(f"/proc/{pid}/smaps") as f:
        in_sysv = False
        for ln in f:
            fields = ln.split()
            if "-" in fields[0] and len(fields) >= 5:
                in_sysv = len(fields) >= 6 and fields[5].startswith("/SYSV")
            elif in_sysv and fields[0] == "Rss:":
                sysv += int(fields[1])
    return (status_kib(pid, "RssAnon") + status_kib(pid, "RssShmem")
            - sysv)


def fd_links(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def login(user, pw, tls=True):
    r = Raw(d.imaps if tls else d.imap, tls=tls, timeout=60)
    _, tag = r.cmd("l", f'LOGIN "{user}" "{pw}"')
    t.ok(tag.startswith("l OK"), f"login {user}", tag)
    return r


wpid = worker_pid()
t.ok(wpid is not None, "the worker runs")

# -- 1. a 20 MB APPEND streams in while another session is served ---------
a = login(A, "alice-pw")
b = login(A, "alice-pw")
caps, _ = b.cmd("c", "CAPABILITY")
capline = " ".join(caps)
t.ok("MULTIAPPEND" in capline, "MULTIAPPEND announced")
m = re.search(r"APPENDLIMIT=(\d+)", capline)
t.ok(m is not None, "APPENDLIMIT announced")
limit = int(m.group(1)) if m else 0
t.eq(limit, 21 * 1024 * 1024, "APPENDLIMIT is [limits] message_size")
b.cmd("s", "SELECT INBOX")

# VmRSS counts the store's Berkeley DB regions (shared by every process
# and bounded by [store] cache_size), which the append fills as it writes;
# private_kib is what this worker holds for itself.
rss0 = status_kib(wpid, "VmRSS")
anon0 = private_kib(wpid)
chunk = (b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 65536)[:1 << 20]
body = bytearray()
a.send(f"a1 APPEND INBOX {{{BIG}}}\r\n")
t.eq(a.line(), "+ Ready for literal data", "a 20 MB literal gets +")
noops = 0
sent = 0
mid_rss = mid_anon = None
spool_links = []
while sent < BIG:
    piece = chunk if sent == 0 else chunk.replace(b"Subject: big", b"xxxxxxxxxxxx")
    a.send(piece)
    body += piece
    sent += len(piece)
    if sent % (4 << 20) == 0:
        _, tag = b.cmd(f"n{noops}", "NOOP")
        if tag.startswith(f"n{noops} OK"):
            noops += 1
    if sent == 16 << 20:
        spool_links = fd_links(wpid)
        mid_rss = status_kib(wpid, "VmRSS")
        mid_anon = private_kib(wpid)
t.eq(noops, 5, "another session's NOOPs answered while the literal streams")
store_dir = os.path.realpath(os.path.join(d.dir, "store"))
t.ok(any(x.startswith(store_dir + "/") and x.endswith("(deleted)")
         for x in spool_links),
     "the literal streams into an unlinked file in the store's folder",
     spool_links)
# A sanitizer build keeps freed blocks in quarantine (every TLS record
# read stays resident for a while): the memory bounds are for real builds.
sanitized = b"libasan" in subprocess.run(["ldd", IMAPD],
                                          capture_output=True).stdout


def mem_ok(cond, name, diag=None):
    if sanitized:
        t.n += 1
        print(f"ok {t.n} - {name} # SKIP sanitizer build", flush=True)
    else:
        t.ok(cond, name, diag)


mem_ok(mid_rss is not None and (mid_rss - rss0) * 1024 < BIG // 2,
       "worker RSS did not grow by the message while it streamed in",
       f"before {rss0} KiB, at 16 MB {mid_rss} KiB")
a.send("\r\n")
lines, tag = a.until("a1")
t.ok(re.match(r"a1 OK \[APPENDUID \d+ 1\]", tag) is not None,
     "20 MB APPEND completed with APPENDUID", tag)
rss1 = status_kib(wpid, "VmRSS")
anon1 = private_kib(wpid)
t.diag(f"worker VmRSS {rss0} -> {mid_rss} (16 MB in) -> {rss1} KiB after; "
       f"private {anon0} -> {mid_anon} -> {anon1} KiB")
mem_ok(mid_anon is not None and (mid_anon - anon0) * 1024 < BIG // 2,
       "worker private memory did not grow by the message while it "
       "streamed")
mem_ok((anon1 - anon0) * 1024 < BIG // 2,
       "worker private memory after the APPEND grew by less than half the "
       "message")
b.cmd("n", "NOOP")
lines, tag = b.cmd("f", "UID FETCH 1 (RFC822.SIZE)")
t.ok(any(f"RFC822.SIZE {BIG}" in ln for ln in lines), "its size is 20 MB",
     lines)
b.send("g UID FETCH 1 (BODY.PEEK[]<10000000.64>)\r\n")
head = b.line()
data = b.read(64) if head.endswith("{64}") else b""
_, tag = b.until("g")
t.ok(tag.startswith("g OK"), "FETCH of a slice of the big message", tag)
t.eq(bytes(data), bytes(body[10000000:10000064]),
     "its bytes at 10,000,000 are the ones sent")
a.close()
b.close()

# -- 2. quota and APPENDLIMIT before "+" ----------------------------------
q = login(B, "bob-pw")
q.send("q1 APPEND INBOX {200000}\r\n")
t.ok(q.line().startswith("q1 NO [OVERQUOTA]"),
     "over quota: NO [OVERQUOTA] instead of +")
q.send("q2 APPEND INBOX {90000}\r\n")
t.eq(q.line(), "+ Ready for literal data", "within quota: +")
q.send(b"Subject: fits\r\n\r\n" + b"y" * (90000 - 17) + b"\r\n")
_, tag = q.until("q2")
t.ok(tag.startswith("q2 OK [APPENDUID"), "the message within quota is stored",
     tag)
q.send("q3 APPEND INBOX {20000}\r\n")
t.ok(q.line().startswith("q3 NO [OVERQUOTA]"),
     "quota counts what is stored already")
# LITERAL+ over quota: the bytes are read and dropped, then NO.
q.send(b"q4 APPEND INBOX {20000+}\r\n" + b"z" * 20000 + b"\r\n")
_, tag = q.until("q4")
t.ok(tag.startswith("q4 NO [OVERQUOTA]"), "LITERAL+ over quota: NO", tag)
_, tag = q.cmd("q5", "NOOP")
t.ok(tag.startswith("q5 OK"), "the session goes on after a dropped literal")
q.close()

r = login(A, "alice-pw")
r.send(f"t1 APPEND INBOX {{{limit + 1}}}\r\n")
t.ok(r.line().startswith("t1 NO [TOOBIG]"), "APPENDLIMIT+1: NO [TOOBIG]")
r.send(f"t2 APPEND INBOX {{{limit}}}\r\n")
t.eq(r.line(), "+ Ready for literal data", "APPENDLIMIT: +")
r.close()            # mid-literal: the spool file is released
r = login(A, "alice-pw")
r.send(f"t3 APPEND INBOX {{{limit - 1}}}\r\n")
t.eq(r.line(), "+ Ready for literal data", "APPENDLIMIT-1: +")
r.close()
r = login(A, "alice-pw")
r.send(f"t4 APPEND INBOX {{{limit + 1}+}}\r\n")
filler = b"w" * (1 << 20)
left = limit + 1
while left > 0:
    n = min(left, len(filler))
    r.send(filler[:n])
    left -= n
r.send("\r\n")
_, tag = r.until("t4")
t.ok(tag.startswith("t4 NO [TOOBIG]"),
     "LITERAL+ over APPENDLIMIT: read, dropped, NO [TOOBIG]", tag)
_, tag = r.cmd("t5", "NOOP")
t.ok(tag.startswith("t5 OK"), "the session goes on after the big drop")

# -- 3. MULTIAPPEND ------------------------------------------------------
_, tag = r.cmd("c0", "CREATE Multi")
t.ok(tag.startswith("c0 OK"), "CREATE Multi")
m1 = b"Subject: one\r\n\r\n1\r\n"
m2 = b"Subject: two\r\n\r\n2\r\n"
big3 = b"Subject: three\r\n\r\n" + b"3" * 100000 + b"\r\n"
r.send(b"m1 APPEND Multi (\\Seen) {%d}\r\n" % len(m1))
t.eq(r.line(), "+ Ready for literal data", "MULTIAPPEND first literal: +")
r.send(m1 + b" (\\Flagged) \"01-Feb-2024 10:00:00 +0800\" {%d+}\r\n"
       % len(m2) + m2 + b" {%d}\r\n" % len(big3))
t.eq(r.line(), "+ Ready for literal data", "MULTIAPPEND third literal: +")
r.send(big3 + b"\r\n")
_, tag = r.until("m1")
mm = re.match(r"m1 OK \[APPENDUID (\d+) (\S+)\]", tag)
t.ok(mm is not None, "MULTIAPPEND OK with APPENDUID", tag)
t.eq(mm.group(2) if mm else None, "1:3", "APPENDUID carries the UID set")
lines, tag = r.cmd("m2", "EXAMINE Multi")
t.ok("* 3 EXISTS" in lines, "three messages in Multi", lines)
lines, _ = r.cmd("m3", "FETCH 1:3 (FLAGS RFC822.SIZE)")
t.ok(any("\\Seen" in ln and ln.startswith("* 1 ") for ln in lines) and
     any("\\Flagged" in ln and ln.startswith("* 2 ") for ln in lines) and
     any(f"RFC822.SIZE {len(big3)}" in ln for ln in lines),
     "each message has its own flags and size", lines)

# All or nothing: the first message defines a keyword and the second
# brings 64 more, past the mailbox's 64 slots, so the store refuses the
# second after the first was added.
kws = " ".join(f"kw{i}" for i in range(64))
r.send(b"m4 APPEND Multi (extra) {%d+}\r\n" % len(m1) + m1 +
       b" (" + kws.encode() + b") {%d+}\r\n" % len(m2) + m2 + b"\r\n")
_, tag = r.until("m4")
t.ok(tag.startswith("m4 NO"), "MULTIAPPEND with a failing message: NO", tag)
lines, _ = r.cmd("m5", "STATUS Multi (MESSAGES UIDNEXT)")
t.ok(any("MESSAGES 3" in ln for ln in lines),
     "none of the failed MULTIAPPEND's messages stayed", lines)
# The same with a large (spooled) first message: stored on a helper
# thread, and taken back there too.
r.send(b"m8 APPEND Multi (extra) {%d+}\r\n" % len(big3) + big3 +
       b" (" + kws.encode() + b") {%d+}\r\n" % len(m2) + m2 + b"\r\n")
_, tag = r.until("m8")
t.ok(tag.startswith("m8 NO"),
     "MULTIAPPEND with a large message and a failing one: NO", tag)
lines, _ = r.cmd("m9", "STATUS Multi (MESSAGES)")
t.ok(any("MESSAGES 3" in ln for ln in lines),
     "none of those stayed either", lines)
r.send(b"m10 APPEND NoSuchBox {%d+}\r\n" % len(big3) + big3 + b"\r\n")
_, tag = r.until("m10")
t.ok(tag.startswith("m10 NO [TRYCREATE]"),
     "a large message for a missing mailbox: NO [TRYCREATE]", tag)
# Ten messages of 60,000 to 130,000 bytes: the first stay in memory, the
# rest share one spool file at offsets that are not page-aligned.
msgs = [(b"Subject: part %d\r\n\r\n" % k) +
        bytes([65 + k]) * (60000 + 7777 * k) + b"\r\n" for k in range(10)]
cmd = b"m7 APPEND Multi"
for k, mb in enumerate(msgs):
    cmd += b" {%d+}\r\n" % len(mb) + mb
r.send(cmd + b"\r\n")
_, tag = r.until("m7")
mm = re.match(r"m7 OK \[APPENDUID (\d+) (\d+):(\d+)\]", tag)
t.ok(mm is not None, "MULTIAPPEND of ten large messages", tag)
if mm:
    lo = int(mm.group(2))
    good = 0
    for k, mb in enumerate(msgs):
        r.send(f"g{k} UID FETCH {lo + k} (BODY.PEEK[])\r\n")
        head = r.line()
        got = r.read(len(mb)) if head.endswith("{%d}" % len(mb)) else b""
        r.until(f"g{k}")
        good += got == mb
    t.eq(good, 10, "each of the ten messages is stored byte for byte")
r.send(b"m6 APPEND Multi {0+}\r\n\r\n")
_, tag = r.until("m6")
t.ok(tag.startswith("m6 NO") or tag.startswith("m6 BAD"),
     "an empty message is refused", tag)
r.close()

# A client that hangs up while its large APPEND is being stored: the job
# finishes without the session, the message is stored, the worker lives.
lines, _ = login(A, "alice-pw").cmd("h0", "STATUS Multi (MESSAGES)")
before = next((int(x) for ln in lines
               for x in re.findall(r"MESSAGES (\d+)", ln)), -1)
h = login(A, "alice-pw")
gone = b"Subject: gone\r\n\r\n" + b"g" * (4 << 20) + b"\r\n"
h.send(b"h1 APPEND Multi {%d+}\r\n" % len(gone) + gone + b"\r\n")
h.close()
r = login(A, "alice-pw")
after = -1
for _ in range(100):
    lines, _ = r.cmd("h2", "STATUS Multi (MESSAGES)")
    after = next((int(x) for ln in lines
                  for x in re.findall(r"MESSAGES (\d+)", ln)), -1)
    if after == before + 1:
        break
    time.sleep(0.1)
t.eq(after, before + 1, "the large APPEND of a client that hung up is stored")
t.eq(worker_pid(), wpid, "the worker is still the same process")
r.close()

d.stop()
t.ok("event=append-refused" in d.logtext(), "refusals are logged")

# -- 4. encryption at rest: the spool is memory, never a file ------------
e = Imapd(t, name="enc", message_size="2M")
key = os.path.join(e.dir, "store.key")
with open(key, "wb") as f:
    f.write(os.urandom(32))
os.chmod(key, 0o600)
if os.geteuid() == 0:
    subprocess.run(["chown", "nobody:nogroup", key], check=True)
with open(e.conf) as f:
    conf = f.read()
with open(e.conf, "w") as f:
    f.write(conf.replace("[store]\n", "[store]\nkey_file = store.key\n", 1))
e.ctl("domain", "add", "city.example")
e.user(A, "alice-pw")
e.start()
d = e
epid = worker_pid()
r = Raw(e.imaps, tls=True, timeout=60)
_, tag = r.cmd("l", f'LOGIN "{A}" "alice-pw"')
secret = b"Subject: sealed\r\n\r\n" + b"S3CR3T-" * 30000 + b"\r\n"
r.send(f"e1 APPEND INBOX {{{len(secret)}}}\r\n")
t.eq(r.line(), "+ Ready for literal data", "encrypted store: + for 210 KB")
r.send(secret[:100000])
links = []
for _ in range(50):
    links = fd_links(epid)
    if any(x.startswith("/memfd:govmail-append") for x in links):
        break
    time.sleep(0.1)
t.ok(any(x.startswith("/memfd:govmail-append") for x in links),
     "encrypted store: the literal streams into a memfd", links)
estore = os.path.realpath(os.path.join(e.dir, "store"))
t.ok(not any(x.startswith(estore + "/") and x.endswith("(deleted)")
             for x in links), "encrypted store: no spool file on disk")
r.send(secret[100000:] + b"\r\n")
_, tag = r.until("e1")
t.ok(tag.startswith("e1 OK [APPENDUID"), "encrypted store: APPEND stored",
     tag)
r.cmd("s", "SELECT INBOX")
r.send("g FETCH 1 (BODY.PEEK[])\r\n")
head = r.line()
got = r.read(len(secret)) if head.endswith("{%d}" % len(secret)) else b""
r.until("g")
t.ok(got == secret, "encrypted store: the message reads back whole")
r.close()
e.stop()
t.done()
