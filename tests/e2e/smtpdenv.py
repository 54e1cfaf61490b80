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
import os
import socket
import ssl
import subprocess
import time

from tap import program, free_port, wait_port

SMTPD = program("smtpd/govmail-smtpd")
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


class Smtpd:
    def __init__(self, t, name="smtpd", extra_smtpd="", extra="",
                 workers=1, extra_limits=""):
        self.t = t
        self.dir = os.path.join(t.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "govmail.conf")
        self.smtp = free_port()
        self.sub = free_port()
        self.subs = free_port()
        self.proc = None
        self.log = os.path.join(self.dir, "smtpd.log")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", os.path.join(self.dir, "key.pem"),
                        "-out", os.path.join(self.dir, "cert.pem"),
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        os.chmod(os.path.join(self.dir, "key.pem"), 0o600)
        with open(self.conf, "w") as f:
            f.write("[store]\npath = store\npassword_opslimit = 1\n"
                    "password_memlimit = 8M\n"
                    "[limits]\nmessage_size = 64K\n" + extra_limits +
                    "[smtpd]\nhostname = mx.test.example\n"
                    f"listen_smtp = 127.0.0.1:{self.smtp}\n"
                    f"listen_submission = 127.0.0.1:{self.sub}\n"
                    f"listen_submissions = 127.0.0.1:{self.subs}\n"
                    f"workers = {workers}\npid_file = smtpd.pid\n"
                    + extra_smtpd +
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

    def ls(self, addr, box="INBOX"):
        p = self.ctl("ls", addr, box)
        return p.stdout.splitlines()

    def cat(self, addr, uid, box="INBOX"):
        p = subprocess.run(_as_user() + [GOVMAILCTL, "-c", self.conf, "cat",
                                         addr, box, str(uid)],
                           capture_output=True, timeout=60)
        return p.stdout

    def stats(self):
        p = self.ctl("stats")
        return {k: int(v) for k, v in
                (ln.split(": ", 1) for ln in p.stdout.splitlines())}

    # -- the daemon ------------------------------------------------------
    def start(self):
        logf = open(self.log, "ab")
        self.proc = self.t.spawn(_as_user() + [SMTPD, "-c", self.conf, "-f"],
                                 stdout=logf, stderr=logf, cwd=self.dir)
        logf.close()
        ok = all(wait_port(p) for p in (self.smtp, self.sub, self.subs))
        if not ok:
            raise RuntimeError("govmail-smtpd did not start: " +
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

    def worker_pids(self):
        """PIDs of the workers (children of the daemon's parent)."""
        parent = self.daemon_pid()
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)],
                             capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def daemon_pid(self):
        # Under setpriv the spawned process execs the daemon: same PID.
        return self.proc.pid


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
