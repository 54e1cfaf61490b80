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
import os
import socket
import ssl
import subprocess

from tap import program, free_port, wait_port

IMAPD = program("imapd/govmail-imapd")
GOVMAILCTL = program("tools/govmailctl")


def _as_user():
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup",
            "--clear-groups"]


def tls_client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Imapd:
    def __init__(self, t, name="imapd", extra_imapd="", extra="",
                 workers=1, plaintext_loopback=False, message_size="1M"):
        self.t = t
        self.dir = os.path.join(t.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "govmail.conf")
        self.imap = free_port()
        self.imaps = free_port()
        self.proc = None
        self.log = os.path.join(self.dir, "imapd.log")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", os.path.join(self.dir, "key.pem"),
                        "-out", os.path.join(self.dir, "cert.pem"),
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        os.chmod(os.path.join(self.dir, "key.pem"), 0o600)
        with open(self.conf, "w") as f:
            f.write("[store]\npath = store\npassword_opslimit = 1\n"
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
        if os.geteuid() == 0:
            os.chmod(t.tmp, 0o755)
            subprocess.run(["chown", "-R", "nobody:nogroup", self.dir],
                           check=True)

    # -- govmailctl ------------------------------------------------------
    def ctl(self, *args, input=None, check=True):
        p = self.t.run(_as_user() + [GOVMAILCTL, "-c", self.conf]
                       + list(args), input=input, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"govmailctl {args}: {p.stderr}")
        return p

    def user(self, addr, password, *opts):
        return self.ctl("user", "add", addr, "--class", "citizen", *opts,
                        input=password + "\n")

    def deliver(self, addr, msg):
        if isinstance(msg, str):
            msg = msg.encode()
        p = subprocess.run(_as_user() + [GOVMAILCTL, "-c", self.conf,
                                         "deliver", addr],
                           input=msg, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"deliver: {p.stderr}")

    def ls(self, addr, box="INBOX"):
        return self.ctl("ls", addr, box).stdout.splitlines()

    # -- the daemon ------------------------------------------------------
    def start(self, env=None):
        logf = open(self.log, "ab")
        self.proc = self.t.spawn(_as_user() + [IMAPD, "-c", self.conf, "-f"],
                                 stdout=logf, stderr=logf, cwd=self.dir,
                                 env=env)
        logf.close()
        if not (wait_port(self.imap) and wait_port(self.imaps)):
            raise RuntimeError("govmail-imapd did not start: " +
                               self.logtext())
        return self.proc

    def stop(self):
        if self.proc is not None:
            self.t.stop(self.proc)
            self.proc = None

    def logtext(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

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
