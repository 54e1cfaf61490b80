"""fakesmtp.py - "the remote domain" of the outbound tests: a small SMTP
server on a free loopback port, one thread per session, optionally with
STARTTLS (a throwaway certificate).  It records every MAIL and RCPT line
(lines), the attempts per recipient (tries) and every message it took
(got, as stored() makes them).  A test subclasses it to choose the
replies to RCPT (rcpt_reply), what EHLO announces (ehlo_lines) and what
it keeps of a message (stored); a greeting other than 220 turns every
session away.  Shared by test_smtpd_outbound.py, test_smtpd_dsn.py and
test_smtpd_mx.py (which listens on port 25 of other loopback addresses).
"""
import os
import socket
import ssl
import threading
import time

from tap import free_port


class FakeSmtp:
    def __init__(self, certdir=None, host="127.0.0.1", port=None,
                 greeting="220 remote ESMTP"):
        self.port = port if port is not None else free_port(host)
        self.greeting = greeting
        self.sessions = 0       # connections accepted
        self.lines = []         # MAIL and RCPT command lines
        self.got = []
        self.tries = {}
        self.inject = False     # STARTTLS: a reply injected before TLS
        self.ctx = None
        if certdir is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(os.path.join(certdir, "cert.pem"),
                                     os.path.join(certdir, "key.pem"))
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, self.port))
        self.ls.listen(16)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    # -- what a subclass chooses -----------------------------------------
    def ehlo_lines(self, tls):
        """EHLO keywords after the greeting line."""
        return (["STARTTLS"] if self.ctx is not None and not tls else []) \
            + ["8BITMIME"]

    def rcpt_reply(self, rcpt, earlier):
        """The reply to RCPT TO:<rcpt>, tried `earlier` times before."""
        return "250 ok"

    def on_mail(self, sender, params):
        """MAIL FROM:<sender> params (called under the lock)."""

    def stored(self, sender, rcpts, data, tls):
        """A message taken (called under the lock)."""
        self.got.append((sender, rcpts, data, tls))

    # -- the server --------------------------------------------------------
    def serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.sessions += 1
            threading.Thread(target=self.session, args=(c,),
                             daemon=True).start()

    def session(self, c):
        c.settimeout(30)
        f = c.makefile("rb")
        w = c
        tls = False
        sender, rcpts = None, []

        def say(s):
            w.sendall((s + "\r\n").encode())
        say(self.greeting)
        if not self.greeting.startswith("220"):
            try:
                f.readline()    # QUIT, or nothing
                say("221 bye")
            except OSError:
                pass
            c.close()
            return
        try:
            while True:
                ln = f.readline()
                if not ln:
                    return
                cmd = ln.decode("utf-8", "replace").rstrip("\r\n")
                up = cmd.upper()
                if up.startswith("EHLO"):
                    say("250-remote")
                    kw = self.ehlo_lines(tls)
                    for i, k in enumerate(kw):
                        say(("250 " if i == len(kw) - 1 else "250-") + k)
                elif up == "STARTTLS" and self.ctx is not None and not tls:
                    if self.inject:
                        # Response injection: must be discarded.
                        w.sendall(b"220 go ahead\r\n250 injected\r\n")
                    else:
                        say("220 go ahead")
                    w = self.ctx.wrap_socket(c, server_side=True)
                    f = w.makefile("rb")
                    tls = True
                elif up.startswith("MAIL FROM:"):
                    sender, _, params = cmd[10:].partition(">")
                    sender = sender.strip("< ")
                    with self.lock:
                        self.lines.append(cmd)
                        self.on_mail(sender, params.strip())
                    rcpts = []
                    say("250 ok")
                elif up.startswith("RCPT TO:"):
                    r = cmd[8:].split(">")[0].strip("< ")
                    with self.lock:
                        self.lines.append(cmd)
                        n = self.tries.get(r, 0)
                        self.tries[r] = n + 1
                    reply = self.rcpt_reply(r, n)
                    if reply.startswith("250"):
                        rcpts.append(r)
                    say(reply)
                elif up == "DATA":
                    say("354 go")
                    data = b""
                    while True:
                        ln = f.readline()
                        if ln in (b".\r\n", b""):
                            break
                        data += ln[1:] if ln.startswith(b".") else ln
                    with self.lock:
                        self.stored(sender, rcpts, data, tls)
                    say("250 queued")
                elif up == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("250 ok")
        except (OSError, ssl.SSLError):
            return

    # -- waiting -----------------------------------------------------------
    def wait(self, pred, timeout=30):
        """The messages got that satisfy pred, once there is one."""
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                hits = [g for g in self.got if pred(g)]
            if hits:
                return hits
            time.sleep(0.2)
        return []

    def wait_tries(self, rcpt, n, timeout=40):
        """True once rcpt was tried n times."""
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if self.tries.get(rcpt, 0) >= n:
                    return True
            time.sleep(0.2)
        return False
