#!/usr/bin/env python3
"""govmail-smtpd against hostile raw sessions: not an open relay (remote
domains, percent hack, bang paths, source routes, quoted local parts with
@, double @, trailing dots, address literals); SMTP smuggling (bare LF and
bare CR never end DATA, no second message is ever made); STARTTLS command
injection; the named limits at N-1, N and N+1 where they are exact
(command line 2048, text line 998, recipients, message size, AUTH line
12288), errors per session, the idle timeout, failed AUTH rate-limited per
address; NUL bytes, malformed addresses and invalid UTF-8 get a 5xx."""
import base64
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd, Raw, tls_client_ctx  # noqa: E402

t = Suite()
D = "city.example"
A = f"alice@{D}"
CMD_MAX = 2048          # SMTP_CMD_LINE_MAX
AUTH_LINE_MAX = 12288   # SMTP_AUTH_LINE_MAX
TEXT_MAX = 998          # SMTP_TEXT_LINE_MAX
SIZE_MAX = 65536 - 4096  # [limits] message_size 64K - SMTPD_TRACE_RESERVE
RCPT_MAX = 5
HELO_MAX = 255          # SMTP_HELO_MAX
ERRORS_MAX = 5
AUTH_FAILURES = 3
d = Smtpd(t, extra_smtpd=f"max_recipients = {RCPT_MAX}\n"
          f"max_errors = {ERRORS_MAX}\ncommand_timeout = 3s\n",
          extra_limits=f"auth_failures = {AUTH_FAILURES}\n")
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.start()


def count():
    return len(d.ls(A))


def session(port=None):
    r = Raw(port or d.smtp)
    r.cmd("EHLO hostile.example")
    return r


def relay(t):
    cases = [
        ("TO:<victim@remote.example>", 554, "a remote domain"),
        (f"TO:<victim%remote.example@{D}>", 553, "percent hack"),
        (f"TO:<remote.example!victim@{D}>", 553, "bang path"),
        ("TO:<remote.example!victim>", 553, "bang path without domain"),
        (f"TO:<@{D}:victim@remote.example>", 553, "source route"),
        (f"TO:<@{D},@x.example:victim@remote.example>", 553,
         "source route with two hops"),
        (f"TO:<\"victim@remote.example\"@{D}>", 553,
         "quoted local part holding @"),
        (f"TO:<victim@remote.example@{D}>", 501, "double @"),
        (f"TO:<alice@{D}.>", 501, "trailing dot"),
        ("TO:<victim@remote.example.>", 501, "trailing dot, remote"),
        ("TO:<victim@[127.0.0.1]>", 553, "address literal"),
        ("TO:<victim@[IPv6:::1]>", 553, "IPv6 address literal"),
        ("TO:<victim@remote.example> NOTIFY=NEVER", 554,
         "remote with parameters"),
    ]
    for arg, want, what in cases:
        r = session()
        r.cmd("MAIL FROM:<x@remote.example>")
        code, text = r.cmd("RCPT " + arg)
        t.eq(code, want, f"relay refused: {what}")
        r.close()
    # A refusal leaves no recipient behind.
    r = session()
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<victim@remote.example>")
    t.eq(r.cmd("DATA")[0], 554, "DATA without a valid recipient: 554")
    r.close()


SMUGGLE = [
    (b"\n.\n", "<LF>.<LF>"),
    (b"\n.\r\n", "<LF>.<CR><LF>"),
    (b"\r.\r", "<CR>.<CR>"),
    (b"\r.\r\n", "<CR>.<CR><LF>"),
    (b"\r\r\n.\r\r\n", "<CR><CR><LF>.<CR><CR><LF>"),
    (b"\r\n.\n", "<CR><LF>.<LF>"),
    (b"\r\n.\r\r\n", "<CR><LF>.<CR><CR><LF>"),
    (b"\r\n.\r", "<CR><LF>.<CR> then more"),
]


def smuggling(t):
    before = count()
    for sep, name in SMUGGLE:
        r = session()
        r.send(f"MAIL FROM:<x@remote.example>\r\nRCPT TO:<{A}>\r\nDATA\r\n")
        codes = [r.reply()[0] for _ in range(3)]
        payload = (b"Subject: outer\r\n\r\nbody" + sep +
                   b"MAIL FROM:<admin@" + D.encode() + b">\r\n"
                   b"RCPT TO:<" + A.encode() + b">\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nevil\r\n.\r\n")
        r.send(payload)
        code, text = r.reply()
        t.ok(codes == [250, 250, 354] and code == 554,
             f"smuggling {name}: refused with 554", f"{codes} {code} {text}")
        # Whatever follows is never read as commands: the server closes.
        t.ok(r.closed(), f"smuggling {name}: session closed")
        r.close()
    t.eq(count(), before, "smuggling: no message was created at all")
    subj = [ln.split("\t")[3] for ln in d.ls(A)]
    t.ok("smuggled" not in subj, "no smuggled message in the mailbox")


def starttls_injection(t):
    r = Raw(d.smtp)
    r.cmd("EHLO c")
    # The injected commands arrive in the same packet as STARTTLS.
    r.send("STARTTLS\r\nEHLO injected\r\nMAIL FROM:<x@remote.example>\r\n")
    code, _ = r.reply()
    t.eq(code, 220, "STARTTLS 220")
    ctx = tls_client_ctx()
    ts = ctx.wrap_socket(r.s, server_hostname="localhost")
    f = ts.makefile("rb")
    ts.sendall(f"RCPT TO:<{A}>\r\n".encode())
    line = f.readline().decode()
    t.ok(line.startswith("503 "),
         "pipelined plaintext commands were discarded (RCPT gets 503)",
         line)
    ts.sendall(b"EHLO c\r\n")
    lines = []
    while True:
        ln = f.readline().decode()
        lines.append(ln)
        if not ln or ln[3] == " ":
            break
    t.ok(lines[0].startswith("250-"), "EHLO after TLS is answered",
         "".join(lines))
    ts.close()


def line_limits(t):
    r = session()
    for n, want in ((CMD_MAX - 1, 250), (CMD_MAX, 250), (CMD_MAX + 1, 500)):
        line = "NOOP " + "x" * (n - 5)
        t.eq(r.cmd(line)[0], want, f"command line of {n} bytes: {want}")
    big = "NOOP " + "x" * (AUTH_LINE_MAX + 10)
    code, text = r.cmd(big)
    t.eq(code, 500, "a line over the connection limit: 500")
    t.eq(r.cmd("NOOP")[0], 250, "the session goes on after it")
    r.close()
    # Text lines in DATA: 998 fine, 999 refused.
    before = count()
    for n, want in ((TEXT_MAX - 1, 250), (TEXT_MAX, 250),
                    (TEXT_MAX + 1, 554)):
        r = session()
        r.cmd("MAIL FROM:<x@remote.example>")
        r.cmd(f"RCPT TO:<{A}>")
        r.cmd("DATA")
        r.send(b"Subject: line\r\n\r\n" + b"y" * n + b"\r\n.\r\n")
        t.eq(r.reply()[0], want, f"text line of {n} characters: {want}")
        r.close()
    t.eq(count(), before + 2, "two messages with lines within the limit")


def helo_limit(t):
    r = Raw(d.smtp)
    for n, want in ((HELO_MAX - 1, 250), (HELO_MAX, 250),
                    (HELO_MAX + 1, 501)):
        t.eq(r.cmd("EHLO " + "h" * n)[0], want,
             f"EHLO name of {n} characters: {want}")
    t.eq(r.cmd("EHLO bad\x7fname")[0], 500, "a control byte in EHLO: 500")
    t.eq(r.cmd("EHLO bad name")[0], 501, "a space in the EHLO name: 501")
    r.close()


def recipient_limit(t):
    r = session()
    r.cmd("MAIL FROM:<x@remote.example>")
    codes = [r.cmd(f"RCPT TO:<{A}>")[0] for _ in range(RCPT_MAX + 1)]
    t.eq(codes, [250] * RCPT_MAX + [452],
         f"{RCPT_MAX} recipients accepted, the next gets 452")
    r.close()


def size_limit(t):
    hdr = b"Subject: size\r\n\r\n"

    def body_of(total):
        # exactly total bytes: CRLF lines of 100 bytes, then the rest
        left = total - len(hdr)
        out = bytearray(hdr)
        while left >= 200:
            out += b"z" * 98 + b"\r\n"
            left -= 100
        out += b"z" * (left - 2) + b"\r\n"
        return bytes(out)

    r = session()
    t.ok(f"SIZE {SIZE_MAX}" in r.cmd("EHLO c")[1], "EHLO announces SIZE")
    r.close()

    before = count()
    for n, want in ((SIZE_MAX - 1, 250), (SIZE_MAX, 250),
                    (SIZE_MAX + 1, 552)):
        m = body_of(n)
        r = session()
        code, _ = r.cmd(f"MAIL FROM:<x@remote.example> SIZE={n}")
        if n > SIZE_MAX:
            t.eq(code, 552, "MAIL SIZE= over the limit: 552")
            r.cmd("RSET")
            r.cmd("MAIL FROM:<x@remote.example>")
        r.cmd(f"RCPT TO:<{A}>")
        r.cmd("DATA")
        r.send(m + b".\r\n")
        code, text = r.reply()
        t.eq(code, want, f"message of {len(m)} bytes: {want}")
        r.close()
    t.eq(count(), before + 2, "only the messages within the limit stored")
    r = session()
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd(f"RCPT TO:<{A}>")
    r.send(f"BDAT {SIZE_MAX + 1} LAST\r\n".encode() + b"q" * (SIZE_MAX + 1))
    t.eq(r.reply()[0], 552, "a BDAT chunk over the size limit: 552")
    t.eq(r.cmd("NOOP")[0], 250, "the chunk was read to its end")
    r.close()


def auth_limits(t):
    ctx = tls_client_ctx()

    def tls_session():
        r = Raw(d.sub)
        r.cmd("EHLO c")
        r.cmd("STARTTLS")
        ts = ctx.wrap_socket(r.s, server_hostname="localhost")
        r.s = ts
        r.f = ts.makefile("rb")
        r.cmd("EHLO c")
        return r

    r = tls_session()
    # The whole line "AUTH PLAIN <b64>" at the connection limit and past it.
    pre = "AUTH PLAIN "
    for n, want in ((AUTH_LINE_MAX, 535), (AUTH_LINE_MAX + 1, 500)):
        b64len = (n - len(pre)) // 4 * 4
        raw = base64.b64encode(b"\0" + b"u" * (b64len // 4 * 3 - 2) + b"\0")
        line = pre + raw.decode()[:b64len]
        line += "=" * 0
        code, text = r.cmd(line + "x" * (n - len(line)))
        t.ok(code in (want, 501), f"AUTH line of {n} bytes: {want} or 501",
             f"{code} {text}")
    r.close()
    r = tls_session()
    code, _ = r.cmd("AUTH LOGIN")
    t.eq(code, 334, "AUTH LOGIN asks for the user name")
    code, _ = r.cmd("x" * (AUTH_LINE_MAX + 1))
    t.eq(code, 500, "an AUTH response over the line limit: 500")
    code, _ = r.cmd("AUTH LOGIN")
    t.eq(code, 334, "a new AUTH may start")
    t.eq(r.cmd("*")[0], 501, "'*' cancels the exchange")
    r.close()
    # Failed AUTH rate limit per address (fresh sessions each time).
    good = base64.b64encode(f"\0{A}\0alice-pw".encode()).decode()
    bad = base64.b64encode(f"\0{A}\0wrong".encode()).decode()
    codes = []
    for i in range(AUTH_FAILURES):
        r = tls_session()
        codes.append(r.cmd("AUTH PLAIN " + bad)[0])
        r.close()
    t.eq(codes, [535] * AUTH_FAILURES,
         f"{AUTH_FAILURES} wrong passwords get 535")
    r = tls_session()
    code, text = r.cmd("AUTH PLAIN " + good)
    t.eq(code, 454, "then even the right password is refused with 454")
    r.close()


def errors_and_junk(t):
    r = session()
    t.eq(r.cmd("NOOP a\0b")[0], 500, "a NUL byte in a command: 500")
    t.eq(r.cmd("MAIL FROM:alice")[0], 501, "MAIL without <>: 501")
    r.send(b"MAIL FROM:<\xff@x.example> SMTPUTF8\r\n")
    t.eq(r.reply()[0], 553, "invalid UTF-8 with SMTPUTF8: 553")
    codes = [r.cmd("XYZZY")[0] for _ in range(ERRORS_MAX - 3)]
    t.eq(codes, [500] * (ERRORS_MAX - 3), "unknown commands: 500")
    t.eq(r.cmd("XYZZY")[0], 421,
         f"error {ERRORS_MAX + 1} of the session: 421")
    t.ok(r.closed(), "and the session is closed")
    r.close()
    r = session()
    r.cmd("MAIL FROM:<x@remote.example>")
    t.eq(r.cmd("RCPT TO:<>")[0], 501, "RCPT TO:<>: 501")
    t.eq(r.cmd(f"RCPT TO:<{A}> FOO=BAR")[0], 555, "unknown RCPT param: 555")
    r.cmd(f"RCPT TO:<{A}>")
    r.cmd("DATA")
    r.send(b"Subject: nul\r\n\r\na\0b\r\n.\r\n")
    t.eq(r.reply()[0], 554, "a NUL byte in the message: 554")
    r.close()
    r = Raw(d.smtp)
    t.eq(r.cmd("GET / HTTP/1.1")[0], 421, "an HTTP request: 421")
    t.ok(r.closed(), "and closed")
    r.close()
    r = Raw(d.smtp)
    t.eq(r.cmd("MAIL FROM:<x@remote.example>")[0], 503,
         "MAIL before EHLO: 503")
    t.eq(r.cmd("DATA")[0], 503, "DATA before MAIL: 503")
    r.close()


def timeout(t):
    r = session()
    r.s.settimeout(20)
    code, text = r.reply()
    t.eq(code, 421, "an idle session gets 421 after command_timeout")
    t.ok(r.closed(), "and is closed")
    r.close()


for case in (relay, smuggling, starttls_injection, line_limits, helo_limit,
             recipient_limit, size_limit, auth_limits, errors_and_junk,
             timeout):
    t.run_case(case)
d.stop()
t.done()
