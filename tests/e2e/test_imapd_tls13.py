#!/usr/bin/env python3
"""govmail-imapd's compact TLS records (`[imapd] tls_compact`, lib/tls13.c)
against real clients: openssl s_client with each TLS 1.3 suite, sending
KeyUpdates (its K and k commands) between commands; a resumed session;
Python's ssl with a
1 MiB APPEND and FETCH over implicit TLS and STARTTLS; a TLS 1.2 client
and `tls_compact = no`, which stay with OpenSSL; forged records written
under the TLS stream, which end the session with the alert RFC 8446 names.
The log's event=tls line says who carries each session's records."""
import os
import re
import select
import socket
import ssl
import subprocess
import time

from tap import Suite
from imapdenv import Imapd, tls_client_ctx

t = Suite()
A = "alice@city.example"
PW = "alice-pw"
BIG = b"".join(b"line %06d of a long message body, 0123456789\r\n" % i
               for i in range(22000))          # about 1 MiB
MSG = b"Subject: tls13\r\n\r\n" + BIG

d = Imapd(t, message_size="4M")
d.ctl("domain", "add", "city.example")
d.user(A, PW)
d.deliver(A, b"Subject: first\r\n\r\nhello over TLS 1.3\r\n")
d.start()


def records_of(n_before):
    """The records= values of event=tls lines logged after n_before."""
    lines = [ln for ln in d.logtext().splitlines() if "event=tls " in ln]
    return [re.search(r"records=(\w+)", ln).group(1)
            for ln in lines[n_before:]]


def tls_lines():
    return sum(1 for ln in d.logtext().splitlines() if "event=tls " in ln)


class SClient:
    """openssl s_client, fed line by line (command letters on)."""

    def __init__(self, port, suite):
        self.p = t.spawn(["openssl", "s_client", "-connect",
                          f"127.0.0.1:{port}", "-servername", "localhost",
                          "-ciphersuites", suite, "-crlf"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
        self.buf = b""

    def send(self, line):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def until(self, pattern, limit=15.0):
        """Output up to a line matching pattern (bounded in time)."""
        end = time.monotonic() + limit
        rx = re.compile(pattern.encode(), re.M)
        while not rx.search(self.buf) and time.monotonic() < end:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
        m = rx.search(self.buf)
        return m.group(0).decode("utf-8", "replace") if m else ""

    def close(self):
        t.stop(self.p)


def case_suites(t):
    for suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                  "TLS_CHACHA20_POLY1305_SHA256"):
        n = tls_lines()
        c = SClient(d.imaps, suite)
        t.ok(c.until(r"^\* OK .*ready") != "", f"{suite}: greeting")
        c.send(f'a1 LOGIN "{A}" "{PW}"')
        t.ok(c.until(r"^a1 OK.*$").startswith("a1 OK"), f"{suite}: login")
        # K: KeyUpdate asking for ours; k: KeyUpdate alone.
        c.send("K")
        time.sleep(0.2)
        c.send("a2 SELECT INBOX")
        t.ok(c.until(r"^a2 OK.*$").startswith("a2 OK"),
             f"{suite}: SELECT after a KeyUpdate (update requested)")
        c.send("k")
        time.sleep(0.2)
        c.send("a3 FETCH 1 BODY[]")
        t.ok(c.until(r"^a3 OK.*$").startswith("a3 OK")
             and b"hello over TLS 1.3" in c.buf,
             f"{suite}: FETCH after a KeyUpdate (not requested)")
        t.ok(b"KEYUPDATE" in c.buf, f"{suite}: s_client sent KeyUpdates")
        c.send("a4 LOGOUT")
        t.ok(c.until(r"^a4 OK.*$").startswith("a4 OK"), f"{suite}: logout")
        c.close()
        rec = records_of(n)
        t.eq(rec[:1], ["govmail"], f"{suite}: records carried by govmail")
        t.ok(f"cipher={suite}" in d.logtext(), f"{suite}: cipher logged")


def big_roundtrip(t, m, what):
    typ, data = m.append("INBOX", None, None, MSG)
    t.eq(typ, "OK", f"{what}: APPEND of 1 MiB")
    uid = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1).decode()
    m.select("INBOX")
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    t.ok(typ == "OK" and data[0][1] == MSG,
         f"{what}: FETCH returns the same 1 MiB")
    m.uid("STORE", uid, "+FLAGS", r"(\Deleted)")
    m.expunge()
    m.logout()


def case_bulk(t):
    n = tls_lines()
    m = d.imap_tls()
    m.login(A, PW)
    big_roundtrip(t, m, "implicit TLS")
    m = d.imap_starttls()
    m.login(A, PW)
    big_roundtrip(t, m, "STARTTLS")
    t.eq(records_of(n), ["govmail", "govmail"],
         "both sessions carried by govmail's records")


def case_tls12(t):
    n = tls_lines()
    ctx = tls_client_ctx()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    import imaplib
    m = imaplib.IMAP4_SSL("127.0.0.1", d.imaps, ssl_context=ctx, timeout=30)
    m.login(A, PW)
    typ, _ = m.select("INBOX")
    t.eq(typ, "OK", "TLS 1.2 session works")
    m.logout()
    t.eq(records_of(n), ["openssl"], "TLS 1.2 stays with OpenSSL")


def forged(t, raw, want_srv, want_alert, what):
    s = socket.create_connection(("127.0.0.1", d.imaps), timeout=10)
    ts = tls_client_ctx().wrap_socket(s, server_hostname="localhost")
    ts.recv(4096)                          # the greeting
    # Under the TLS stream: the bytes go to the server as they are.
    os.write(ts.fileno(), raw)
    err = ""
    try:
        while ts.recv(4096):
            pass
    except ssl.SSLError as e:
        err = str(e)
    except OSError as e:
        err = str(e)
    ts.close()
    t.ok(want_alert in err.lower().replace("_", " "),
         f"{what}: the client gets the {want_alert} alert", err)
    for _ in range(50):
        if want_srv in d.logtext():
            break
        time.sleep(0.1)
    t.ok(f"reason=tls-error error={want_srv}" in d.logtext(),
         f"{what}: the server logs why")


def case_forged(t):
    forged(t, b"\x17\x03\x03\x00\x20" + b"x" * 32,
           "TLS record failed authentication", "bad record mac",
           "a record that fails authentication")
    forged(t, b"\x17\x03\x03\x41\x01",
           "TLS record too long", "record overflow",
           "a record over 2^14 + 256 bytes")
    forged(t, b"\x15\x03\x03\x00\x02\x02\x28",
           "unprotected TLS record after the handshake",
           "unexpected message", "a plaintext alert")
    m = d.imap_tls()
    m.login(A, PW)
    t.eq(m.noop()[0], "OK", "the daemon serves on afterwards")
    m.logout()


def case_resume(t):
    """The session ticket, sent before the handover, resumes a session."""
    ctx = tls_client_ctx()
    n = tls_lines()
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", d.imaps),
                                                 timeout=10),
                        server_hostname="localhost")
    s.recv(4096)                # the greeting; the ticket came before it
    s.sendall(b"a1 LOGOUT\r\n")
    while s.recv(4096):
        pass
    sess = s.session
    s.close()
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", d.imaps),
                                                 timeout=10),
                        server_hostname="localhost", session=sess)
    greeting = s.recv(4096)
    t.ok(s.session_reused, "a second connection resumes with the ticket")
    t.ok(greeting.startswith(b"* OK"), "and is served", greeting)
    s.sendall(b"a1 LOGOUT\r\n")
    while s.recv(4096):
        pass
    s.close()
    t.eq(records_of(n), ["govmail", "govmail"],
         "both carried by govmail's records")


t.run_case(case_suites)
t.run_case(case_resume)
t.run_case(case_bulk)
t.run_case(case_tls12)
t.run_case(case_forged)
d.stop()

# The operator's switch: every session stays with OpenSSL.
d2 = Imapd(t, name="imapd-openssl", extra_imapd="tls_compact = no\n")
d2.ctl("domain", "add", "city.example")
d2.user(A, PW)
d2.start()
m = d2.imap_tls()
m.login(A, PW)
t.eq(m.select("INBOX")[0], "OK", "tls_compact = no: the session works")
m.logout()
t.ok("records=openssl" in d2.logtext()
     and "records=govmail" not in d2.logtext(),
     "tls_compact = no: records carried by OpenSSL")
d2.stop()
t.done()
