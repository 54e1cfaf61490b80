#!/usr/bin/env python3
"""govmail-imapd against hostile raw sessions: commands before login,
LOGIN before STARTTLS, huge/negative/non-synchronising literals (no "+"
before the size check), unbalanced and deeply nested parentheses, long
lines, bad sequence sets, invalid modified UTF-7 names, STARTTLS command
injection, APPEND over the size limit, 1:* over a large mailbox, a large
message streamed, and COMPRESS=DEFLATE.  The daemon must answer each with a
clear protocol error and stay up."""
import base64
import imaplib
import zlib

from tap import Suite
from imapdenv import Imapd, Raw, tls_client_ctx

t = Suite()
d = Imapd(t, message_size="1M")
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.deliver(A, b"Subject: one\r\n\r\nfirst\r\n")
d.start()


def login(r, tag="L"):
    lines, tagged = r.cmd(tag, f'LOGIN "{A}" "alice-pw"')
    return tagged.startswith(tag + " OK")


def case_before_login(t):
    r = Raw(d.imaps, tls=True)
    t.ok(r.greeting.startswith("* OK"), "greeting", r.greeting)
    for cmd in ("SELECT INBOX", "FETCH 1 FLAGS", "LIST \"\" *",
                "APPEND INBOX {3}"):
        _, tagged = r.cmd("a", cmd)
        t.ok(tagged.startswith("a BAD"), f"before login: {cmd} is BAD",
             tagged)
    _, tagged = r.cmd("b", "NOOP")
    t.ok(tagged.startswith("b OK"), "session still usable")
    r.close()


def case_login_before_starttls(t):
    r = Raw(d.imap)
    t.ok("LOGINDISABLED" in r.greeting and "STARTTLS" in r.greeting,
         "greeting on 143 announces STARTTLS and LOGINDISABLED", r.greeting)
    _, tagged = r.cmd("a", f'LOGIN "{A}" "alice-pw"')
    t.ok(tagged.startswith("a NO") and "PRIVACYREQUIRED" in tagged,
         "LOGIN before STARTTLS: NO [PRIVACYREQUIRED]", tagged)
    ir = base64.b64encode(f"\0{A}\0alice-pw".encode()).decode()
    _, tagged = r.cmd("b", f"AUTHENTICATE PLAIN {ir}")
    t.ok(tagged.startswith("b NO"), "AUTHENTICATE before STARTTLS: NO",
         tagged)
    r.close()


def case_starttls_injection(t):
    r = Raw(d.imap)
    r.send("a STARTTLS\r\nb CAPABILITY\r\n")
    line = r.line()
    t.ok(line.startswith("a OK"), "STARTTLS accepted", line)
    s = tls_client_ctx().wrap_socket(r.s, server_hostname="localhost")
    s.settimeout(2)
    s.sendall(b"c NOOP\r\n")
    data = b""
    try:
        while b"c OK" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    t.ok(b"c OK" in data and b"b OK" not in data and
         b"CAPABILITY" not in data,
         "command pipelined before TLS is discarded, not run in TLS", data)
    s.close()


def case_literals(t):
    r = Raw(d.imaps, tls=True)
    r.send("a LOGIN {999999999}\r\n")
    line = r.line()
    t.ok(line.startswith("a BAD") and "TOOBIG" in line,
         "huge literal before login: BAD [TOOBIG], no +", line)
    r.send("b LOGIN {4097}\r\n")
    line = r.line()
    t.ok(line.startswith("b BAD"), "literal 4097 before login: BAD", line)
    r.send("c LOGIN {4096}\r\n")
    line = r.line()
    t.ok(line.startswith("+"), "literal 4096 before login: +", line)
    r.send("x" * 4096 + " {3}\r\n")
    line = r.line()
    t.ok(line.startswith("+"), "second literal: +", line)
    r.send("pw1\r\n")
    _, tagged = r.until("c")
    t.ok(tagged.startswith("c NO"), "4096-byte user name: NO (not BAD)",
         tagged)
    r.send("d LOGIN {-1}\r\n")
    line = r.line()
    t.ok(line.startswith("d BAD"), "negative literal: BAD", line)
    r.send("e LOGIN {99999999999999999999}\r\n")
    line = r.line()
    t.ok(line.startswith("e BAD"), "20-digit literal: BAD", line)
    _, tagged = r.cmd("f", "NOOP")
    t.ok(tagged.startswith("f OK"), "session usable after literal errors",
         tagged)
    r.send("g LOGIN {5000+}\r\n" + "x" * 100)
    line = r.line()
    t.ok(line.startswith("* BYE"), "oversized LITERAL+ before login: BYE",
         line)
    t.ok(r.closed(), "connection closed after BYE")
    r.close()


def case_parens_and_lines(t):
    r = Raw(d.imaps, tls=True)
    _, tagged = r.cmd("a", "ID (\"a\" \"b\"")
    t.ok(tagged.startswith("a BAD"), "unbalanced ( is BAD", tagged)
    _, tagged = r.cmd("b", "ID \"a\")")
    t.ok(tagged.startswith("b BAD"), "unbalanced ) is BAD", tagged)
    _, tagged = r.cmd("c", "ID ((\"a\" \"b\"))")
    t.ok(tagged.startswith("c BAD") and "deep" in tagged,
         "two list levels before login: BAD", tagged)
    _, tagged = r.cmd("d", "NOOP " + "a" * 9000)
    t.ok(tagged.startswith("d BAD") and "too long" in tagged,
         "9000-byte line before login: BAD", tagged)
    t.ok(login(r), "login after the errors")
    r.cmd("s", "SELECT INBOX")
    _, tagged = r.cmd("e", "SEARCH " + "(" * 5000 + "ALL" + ")" * 5000)
    t.ok(tagged.startswith("e BAD"), "5000-deep SEARCH: BAD", tagged)
    _, tagged = r.cmd("f", "SEARCH " + "NOT " * 200 + "ALL")
    t.ok(tagged.startswith("f BAD"), "200 nested NOTs: BAD", tagged)
    _, tagged = r.cmd("g", "SEARCH " + "(" * 10 + "ALL" + ")" * 10)
    t.ok(tagged.startswith("g OK"), "10-deep SEARCH after login: OK",
         tagged)
    _, tagged = r.cmd("h", "NOOP")
    t.ok(tagged.startswith("h OK"), "still usable")
    r.close()


def case_seqsets_and_names(t):
    r = Raw(d.imaps, tls=True)
    login(r)
    r.cmd("s", "SELECT INBOX")
    for bad in ("0", "1:x", "*:0", "4294967296", "1,,2", "2", "-1", ""):
        _, tagged = r.cmd("a", f"FETCH {bad} FLAGS")
        t.ok(tagged.startswith("a BAD"), f"FETCH {bad!r}: BAD", tagged)
    r.cmd("t", "EXAMINE Trash")
    _, tagged = r.cmd("e1", "FETCH 1:* FLAGS")
    t.ok(tagged.startswith("e1 OK"), "FETCH 1:* on an empty mailbox: OK",
         tagged)
    _, tagged = r.cmd("e2", "FETCH 1 FLAGS")
    t.ok(tagged.startswith("e2 BAD"), "FETCH 1 on an empty mailbox: BAD",
         tagged)
    _, tagged = r.cmd("e3", "SEARCH 1:*")
    t.ok(tagged.startswith("e3 OK"), "SEARCH 1:* on an empty mailbox: OK",
         tagged)
    r.cmd("s2", "SELECT INBOX")
    _, tagged = r.cmd("b", "UID FETCH 1:4294967295 FLAGS")
    t.ok(tagged.startswith("b OK"), "UID FETCH 1:4294967295: OK", tagged)
    for name in ("&Jjo", "&AGE-", "&ZeVnLIqe-&U,BTFw-", "\"a\xff\""):
        _, tagged = r.cmd("c", f"SELECT {name}")
        t.ok(tagged.startswith("c NO") or tagged.startswith("c BAD"),
             f"SELECT invalid name {name!r}: NO/BAD", tagged)
    _, tagged = r.cmd("d", 'CREATE "a%b"')
    t.ok(tagged.startswith("d NO"), "CREATE with a wildcard: NO", tagged)
    _, tagged = r.cmd("e", "STORE 1 +FLAGS (\\Bogus)")
    t.ok(tagged.startswith("e BAD"), "unknown system flag: BAD", tagged)
    _, tagged = r.cmd("f", "FETCH 1 (BODY[1.0.HEADER])")
    t.ok(tagged.startswith("f BAD"), "bad section: BAD", tagged)
    _, tagged = r.cmd("g", "FETCH 1 (BODY[]<5.0>)")
    t.ok(tagged.startswith("g BAD"), "zero-length partial: BAD", tagged)
    r.close()


def case_append_limits(t):
    r = Raw(d.imaps, tls=True)
    login(r)
    r.send("a APPEND INBOX {1048577}\r\n")
    line = r.line()
    t.ok(line.startswith("a NO [TOOBIG]"),
         "APPEND over message_size: NO [TOOBIG] before +", line)
    body = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * 50000
    r.send(f"b APPEND INBOX {{{len(body)}}}\r\n")
    line = r.line()
    t.ok(line.startswith("+"), "APPEND under the limit: +", line)
    r.send(body + b"\r\n")
    _, tagged = r.until("b")
    t.ok(tagged.startswith("b OK") and "APPENDUID" in tagged,
         "APPEND of 900 KB", tagged)
    r.cmd("s", "SELECT INBOX")
    r.send("c FETCH 2 BODY.PEEK[]\r\n")
    head = r.line()
    t.ok(head.endswith("{%d}" % len(body)), "streamed literal announced",
         head)
    got = r.read(len(body))
    t.ok(got == body, "900 KB body streamed intact")
    rest = r.line()
    _, tagged = r.until("c")
    t.ok(rest == ")" and tagged.startswith("c OK"), "FETCH completes",
         (rest, tagged))
    r.close()


def case_large_mailbox(t):
    m = d.imap_tls()
    m.login(A, "alice-pw")
    m.create("Bulk")
    for i in range(600):
        m.append("Bulk", None, None,
                 f"Subject: bulk {i}\r\n\r\n{'x' * 2000}\r\n".encode())
    typ, data = m.select("Bulk")
    t.eq(data[0], b"600", "600 messages appended")
    typ, data = m.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
    t.eq(len([x for x in data if isinstance(x, tuple)]), 600,
         "FETCH 1:* BODY.PEEK[] over 600 messages (1.2 MB, sliced)")
    typ, data = m.search(None, "BODY", "xxxx")
    t.eq(len(data[0].split()), 600, "SEARCH BODY over 600 messages")
    typ, data = m.store("1:*", "+FLAGS.SILENT", "(\\Seen)")
    t.eq(typ, "OK", "STORE 1:* +FLAGS.SILENT")
    typ, data = m.search(None, "UNSEEN")
    t.eq(data[0], b"", "all seen")
    m.logout()


def case_compress(t):
    r = Raw(d.imaps, tls=True)
    login(r)
    _, tagged = r.cmd("a", "COMPRESS DEFLATE")
    t.ok(tagged.startswith("a OK"), "COMPRESS DEFLATE", tagged)
    co = zlib.compressobj(wbits=-15)
    de = zlib.decompressobj(wbits=-15)
    r.s.sendall(co.compress(b"b SELECT INBOX\r\nc NOOP\r\n") +
                co.flush(zlib.Z_SYNC_FLUSH))
    data = b""
    while b"c OK" not in data:
        chunk = r.s.recv(4096)
        if not chunk:
            break
        data += de.decompress(chunk)
    t.ok(b"b OK" in data and b"EXISTS" in data and b"c OK" in data,
         "compressed commands answered compressed", data[:300])
    r.close()


for fn in (case_before_login, case_login_before_starttls,
           case_starttls_injection, case_literals, case_parens_and_lines,
           case_seqsets_and_names, case_append_limits, case_large_mailbox,
           case_compress):
    t.run_case(fn)
m = d.imap_tls()
t.eq(m.login(A, "alice-pw")[0], "OK", "daemon alive at the end")
m.logout()
t.ok("signal=" not in d.logtext(), "no worker died during the suite",
     d.logtext()[-2000:])
d.stop()
t.done()
