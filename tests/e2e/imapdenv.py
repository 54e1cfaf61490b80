"""imapdenv.py - a govmail-imapd under test: a scratch configuration and
store, a throwaway TLS certificate, free loopback ports, the daemon started
in the foreground and stopped by PID; helpers for govmailctl, imaplib and
raw IMAP sessions.  Shared by tests/e2e/test_imapd*.py.

    from tap import Suite
    from imapdenv import Imapd
    t = Suite()
    d = Imapd(t)
    d.ctl("domain", "add", "city.example")
    d.user("alice@city.example", "pw")
    d.deliver("alice@city.example", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    d.start()
    m = d.imap_tls()            # imaplib.IMAP4_SSL on the imaps port
    m.login("alice@city.example", "pw")

As root, govmailctl and the daemon run as `nobody` (setpriv), so the store
stays writable by both and the daemon runs in development mode.
"""
import imaplib
import socket

from tap import program, free_port
from daemonenv import Daemon, GOVMAILCTL, _as_user, tls_client_ctx  # noqa: F401

IMAPD = program("imapd/govmail-imapd")


class Imapd(Daemon):
    binary = IMAPD
    what = "govmail-imapd"

    def __init__(self, t, name="imapd", extra_imapd="", extra="",
                 workers=1, plaintext_loopback=False, message_size="1M"):
        super().__init__(t, name, "DNS:localhost,IP:127.0.0.1",
                         "imapd.log")
        self.imap = free_port()
        self.imaps = free_port()
        self.write_conf("[store]\npath = store\npassword_opslimit = 1\n"
                        "password_memlimit = 8M\n"
                        f"[limits]\nmessage_size = {message_size}\n"
                        "[imapd]\n"
                        f"listen_imap = 127.0.0.1:{self.imap}\n"
                        f"listen_imaps = 127.0.0.1:{self.imaps}\n"
                        f"workers = {workers}\npid_file = imapd.pid\n"
                        "plaintext_loopback = "
                        f"{'yes' if plaintext_loopback else 'no'}\n"
                        + extra_imapd +
                        "[tls]\ncert_file = cert.pem\nkey_file = key.pem\n"
                        + extra)

    def ports(self):
        return [self.imap, self.imaps]

    # -- clients ---------------------------------------------------------
    def imap_tls(self):
        return imaplib.IMAP4_SSL("127.0.0.1", self.imaps,
                                 ssl_context=tls_client_ctx(), timeout=30)

    def imap_starttls(self):
        m = imaplib.IMAP4("127.0.0.1", self.imap, timeout=30)
        m.starttls(ssl_context=tls_client_ctx())
        return m

    def imap_plain(self):
        return imaplib.IMAP4("127.0.0.1", self.imap, timeout=30)


class Raw:
    """A raw IMAP client: bytes in, lines out (optionally over TLS)."""

    def __init__(self, port, tls=False, timeout=10):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            s = tls_client_ctx().wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.f = s.makefile("rb")
        self.greeting = self.line()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def line(self):
        ln = self.f.readline()
        return ln.decode("utf-8", "replace").rstrip("\r\n")

    def read(self, n):
        return self.f.read(n)

    def cmd(self, tag, text):
        """Send 'tag text' and read up to the tagged reply: (lines, tagged)."""
        self.send(f"{tag} {text}\r\n")
        return self.until(tag)

    def until(self, tag):
        lines = []
        while True:
            ln = self.line()
            if ln == "":
                return lines, ""
            if ln.startswith(tag + " "):
                return lines, ln
            lines.append(ln)

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, socket.timeout, OSError):
            return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass
