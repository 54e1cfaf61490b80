"""daemonenv.py - what the e2e helpers of every daemon share (smtpdenv.py,
imapdenv.py): a scratch folder with a throwaway TLS certificate and a
govmail.conf, govmailctl on its store, the daemon started in the
foreground on free loopback ports and stopped by PID.

As root, govmailctl and the daemon run as `nobody` (setpriv), so the store
stays writable by both and the daemon runs in development mode, the same
code path as production.
"""
import os
import ssl
import subprocess
import time

from tap import program, wait_port

GOVMAILCTL = program("tools/govmailctl")


def _as_user():
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup",
            "--clear-groups"]


def regions_mapped(pid):
    """How process pid maps the store's regions: "shared" (System V
    segments), "files" (__db.* files), or None before it opened it."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return None
    if "/SYSV" in maps:
        return "shared"
    if "/__db.0" in maps:
        return "files"
    return None


def workers_regions(d, timeout=20.0):
    """The kind of regions every worker of daemon d maps, once all have
    opened the store (they open it one at a time; bounded wait): "shared",
    "files", or None if they disagree or have not opened it in time."""
    end = time.time() + timeout
    while True:
        kinds = {regions_mapped(p) for p in d.worker_pids()}
        if (len(kinds) == 1 and None not in kinds) or time.time() > end:
            return kinds.pop() if len(kinds) == 1 else None
        time.sleep(0.1)


def tls_client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Daemon:
    """One daemon under test; a subclass writes the configuration."""

    binary = None           # program path
    what = "daemon"         # for messages

    def __init__(self, t, name, san, logname):
        self.t = t
        self.dir = os.path.join(t.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "govmail.conf")
        self.proc = None
        self.log = os.path.join(self.dir, logname)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", os.path.join(self.dir, "key.pem"),
                        "-out", os.path.join(self.dir, "cert.pem"),
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True, timeout=60)
        os.chmod(os.path.join(self.dir, "key.pem"), 0o600)

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)
        if os.geteuid() == 0:
            os.chmod(self.t.tmp, 0o755)
            subprocess.run(["chown", "-R", "nobody:nogroup", self.dir],
                           check=True)

    def ports(self):
        """The ports start() waits for."""
        return []

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
    def start(self, env=None):
        logf = open(self.log, "ab")
        self.proc = self.t.spawn(_as_user() + [self.binary, "-c", self.conf,
                                               "-f"],
                                 stdout=logf, stderr=logf, cwd=self.dir,
                                 env=env)
        logf.close()
        if not all(wait_port(p) for p in self.ports()):
            raise RuntimeError(f"{self.what} did not start: " +
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

    def daemon_pid(self):
        # Under setpriv the spawned process execs the daemon: same PID.
        return self.proc.pid

    def worker_pids(self):
        """PIDs of the workers (children of the daemon's parent)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid",
                              str(self.daemon_pid())],
                             capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]
