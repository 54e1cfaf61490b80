"""smtpdenv.py - a govmail-smtpd under test: a scratch configuration and
store, a throwaway TLS certificate, free loopback ports, the daemon started
in the foreground and stopped by PID; helpers for govmailctl and for raw
SMTP sessions.  Shared by tests/e2e/test_smtpd*.py.

    from tap import Suite
    from smtpdenv import Smtpd
    t = Suite()
    d = Smtpd(t, extra_smtpd="max_recipients = 5\n")
    d.ctl("domain", "add", "city.example")
    d.user("alice@city.example", "pw")
    d.start()
    ... smtplib.SMTP("127.0.0.1", d.smtp) ...
    d.ls("alice@city.example")  -> ["1\t123\t()\tSubject", ...]

When the tests run as root the daemon's workers would drop to the
`govmail` user; here everything (govmailctl and the daemon) runs as
`nobody` instead, through setpriv, so that the store stays writable by
both and the daemon runs in development mode, the same code path.
"""
import smtplib
import socket

from tap import program, free_port
from daemonenv import (Daemon, GOVMAILCTL, _as_user,  # noqa: F401
                       tls_client_ctx, workers_regions)

SMTPD = program("smtpd/govmail-smtpd")


class Smtpd(Daemon):
    binary = SMTPD
    what = "govmail-smtpd"

    def __init__(self, t, name="smtpd", extra_smtpd="", extra="",
                 workers=1, extra_limits="", extra_store=""):
        super().__init__(t, name, "DNS:localhost", "smtpd.log")
        self.smtp = free_port()
        self.sub = free_port()
        self.subs = free_port()
        self.write_conf("[store]\npath = store\npassword_opslimit = 1\n"
                        "password_memlimit = 8M\n" + extra_store +
                        "[limits]\nmessage_size = 64K\n" + extra_limits +
                        "[smtpd]\nhostname = mx.test.example\n"
                        f"listen_smtp = 127.0.0.1:{self.smtp}\n"
                        f"listen_submission = 127.0.0.1:{self.sub}\n"
                        f"listen_submissions = 127.0.0.1:{self.subs}\n"
                        f"workers = {workers}\npid_file = smtpd.pid\n"
                        + extra_smtpd +
                        "[tls]\ncert_file = cert.pem\nkey_file = key.pem\n"
                        + extra)

    def ports(self):
        return [self.smtp, self.sub, self.subs]

    def submit(self, user, password, rcpts, msg, mail_options=()):
        """msg (bytes) from user over SMTPS with AUTH; sendmail's
        refused recipients ({} when all were taken)."""
        s = smtplib.SMTP_SSL("127.0.0.1", self.subs,
                             context=tls_client_ctx(), timeout=30)
        s.login(user, password)
        r = s.sendmail(user, rcpts, msg, mail_options=list(mail_options))
        s.quit()
        return r


class Raw:
    """A raw SMTP client: bytes in, reply lines out."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port),
                                          timeout=timeout)
        self.f = self.s.makefile("rb")
        self.greeting = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def reply(self):
        """One whole (multi-line) reply as (code, text); (0, '') on EOF."""
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                return (0, "\n".join(lines))
            ln = ln.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(ln[4:])
            if len(ln) < 4 or ln[3] != "-":
                try:
                    return (int(ln[:3]), "\n".join(lines))
                except ValueError:
                    return (-1, ln)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self):
        """True once the server closed the connection (EOF)."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass
