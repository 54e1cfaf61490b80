"""ctlenv.py - a fresh govmail configuration and store under a Suite's
scratch folder, and a runner for govmailctl, shared by tests/e2e/test_ctl*.py.

    from tap import Suite
    from ctlenv import Ctl
    t = Suite()
    c = Ctl(t)                       # t.tmp/<name>/govmail.conf, store beside
    p = c.run("domain", "add", "x.example")
    c.ok(p, "domain add")            # exit 0
    c.fails(p, 73, "duplicate")      # exit 73 and exactly one stderr line
"""
import os

from tap import program

GOVMAILCTL = program("tools/govmailctl")

# Valid identifiers (check characters computed by GB 32100 / ISO 7064).
USCC_OK = "91110108MA01C0X2T1"
USCC_BAD = "91110108MA01C0X2T2"      # one wrong check character
RESIDENT_ID_OK = "11010519491231002X"
RESIDENT_ID_OK2 = "110105199003071239"
RESIDENT_ID_BAD = "110105194912310021"


class Ctl:
    def __init__(self, t, name="a", extra="", store="store"):
        self.t = t
        self.dir = os.path.join(t.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "govmail.conf")
        self.store = os.path.join(self.dir, store)
        with open(self.conf, "w") as f:
            f.write("[store]\n"
                    f"path = {store}\n"
                    "password_opslimit = 1\n"
                    "password_memlimit = 8M\n"
                    "[limits]\n"
                    "message_size = 64K\n"
                    + extra)

    def run(self, *args, input=None, env=None, timeout=60):
        return self.t.run([GOVMAILCTL, "-c", self.conf] + list(args),
                          input=input, env=env, timeout=timeout)

    def ok(self, p, name):
        """Assert exit 0; show stderr when not."""
        return self.t.ok(p.returncode == 0, name,
                         f"exit {p.returncode}\nstdout: {p.stdout}\n"
                         f"stderr: {p.stderr}")

    def fails(self, p, code, name):
        """Assert exit status code with one line on stderr, naming us."""
        lines = p.stderr.splitlines()
        good = (p.returncode == code and len(lines) == 1
                and lines[0].startswith("govmailctl: "))
        return self.t.ok(good, f"{name}: exit {code}, one error line",
                         f"exit {p.returncode}\nstdout: {p.stdout}\n"
                         f"stderr: {p.stderr}")

    def must(self, *args, input=None, name=None):
        """Run and assert success; return the CompletedProcess."""
        p = self.run(*args, input=input)
        self.ok(p, name or " ".join(args))
        return p

    def user(self, address, cls, *opts, password="secret-pw\n"):
        return self.run("user", "add", address, "--class", cls, *opts,
                        input=password)
