"""tap.py - the end-to-end tests' small harness: TAP output, scratch folders,
free loopback ports, the built programs, and processes stopped by PID.

Every e2e test is a Python script run by the automake TAP driver:

    from tap import Suite
    t = Suite()
    t.ok(cond, "what must hold")
    t.eq(got, want, "what must be equal")
    t.done()          # prints the plan, exits non-zero on any failure

Programs are found under $top_builddir (set by tests/Makefile.am) so VPATH
builds work; scratch goes under a fresh temporary folder removed at exit
unless GOVMAIL_KEEP_TMP is set.
"""
import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

TOP_BUILDDIR = os.environ.get("top_builddir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def program(rel):
    """Absolute path of a built program, e.g. program('tools/govmailctl')."""
    return os.path.join(TOP_BUILDDIR, rel)


# Ports handed out below the kernel's ephemeral range: a port from
# bind(0) is free only until the daemon binds it, and meanwhile any
# outgoing connection of a test running in parallel may take it as its
# local port (seen in CI: "bind ...: Address already in use").
_PORT_FLOOR = 10000
_rand = random.SystemRandom()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port(host="127.0.0.1"):
    """A loopback TCP port nobody listens on right now, outside the
    ephemeral range when there is room below it (bounded tries)."""
    top = _ephemeral_low()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200 if top - _PORT_FLOOR >= 1000 else 0):
        port = _rand.randrange(_PORT_FLOOR, top)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Suite:
    def __init__(self):
        self.n = 0
        self.failed = 0
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="govmail-e2e-")
        atexit.register(self._cleanup)

    # -- assertions ----------------------------------------------------
    def ok(self, cond, name, diag=None):
        self.n += 1
        name = name.replace("#", "\\#")
        if cond:
            print(f"ok {self.n} - {name}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {name}", flush=True)
            if diag is not None:
                for line in str(diag).splitlines()[:40]:
                    print(f"#   {line}", flush=True)
        return bool(cond)

    def eq(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def diag(self, msg):
        for line in str(msg).splitlines():
            print(f"# {line}", flush=True)

    def done(self):
        print(f"1..{self.n}", flush=True)
        self._cleanup()
        sys.exit(1 if self.failed or self.n == 0 else 0)

    def run_case(self, fn):
        """Run fn(self); an exception counts as one failed test."""
        try:
            fn(self)
        except Exception:  # noqa: BLE001 - reported as a TAP failure
            self.ok(False, f"{fn.__name__} raised", traceback.format_exc())

    # -- processes -----------------------------------------------------
    def run(self, argv, input=None, env=None, check=False, timeout=120):
        """Run a command to completion; returns CompletedProcess (text)."""
        e = dict(os.environ)
        if env:
            e.update(env)
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run(argv, input=input, env=e, capture_output=True,
                           timeout=timeout)
        p.stdout = p.stdout.decode("utf-8", "replace")
        p.stderr = p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise RuntimeError(f"{argv} exited {p.returncode}: {p.stderr}")
        return p

    def spawn(self, argv, env=None, **kw):
        """Start a background process, stopped by PID at exit."""
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.Popen(argv, env=e, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _cleanup(self):
        for p in self.procs:
            try:
                self.stop(p)
            except Exception:  # noqa: BLE001
                pass
        self.procs = []
        if self.tmp and not os.environ.get("GOVMAIL_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def wait_port(port, host="127.0.0.1", timeout=10.0):
    """Wait until something accepts on host:port (bounded)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
