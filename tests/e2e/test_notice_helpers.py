"""test_notice_helpers.py - shared by tests/e2e/test_notice_*.py (not a test
itself): a small SMTP submission server written in Python (STARTTLS via ssl,
AUTH PLAIN, PIPELINING) that records every message and its Message-ID, so
govmail-notice is tested without depending on govmail-smtpd; and a scratch
CA (govmail-ca) with accounts, an official's PKCS#12, citizens' PKCS#12
and a TLS server certificate for localhost / 127.0.0.1.
"""
import base64
import email
import email.policy
import os
import re
import socket
import ssl
import threading
import time

from tap import program
from ctlenv import Ctl, RESIDENT_ID_OK

CA = program("ca/govmail-ca")
NOTICE = program("tools/govmail-notice")
DOMAIN = "city.gov.example"


def built():
    return all(os.access(p, os.X_OK) for p in
               (CA, NOTICE, program("tools/govmailctl")))


def skip_unless_smtpd():
    """Skip the whole suite (TAP plan 1..0) unless govmail-notice and
    govmail-smtpd are built."""
    if not (built() and os.access(program("smtpd/govmail-smtpd"),
                                  os.X_OK)):
        print("1..0 # SKIP govmail-smtpd or govmail-notice not built")
        raise SystemExit(0)


class FakeSMTP:
    """A threaded SMTP server on 127.0.0.1: STARTTLS required before AUTH,
    AUTH PLAIN required before MAIL.  refuse: recipient addresses answered
    550.  delay: seconds slept before the final 250 (so a test can kill a
    client in the middle of a run).  Every accepted message is appended to
    self.messages as (mail_from, rcpts, bytes, message_id)."""

    def __init__(self, certfile, keyfile, user, password, refuse=(),
                 delay=0.0, drop_once=(), drop_always=(), tempfail=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.user, self.password = user, password
        self.refuse = set(refuse)
        # drop_once: take the message, then close without the 250 (the
        # client cannot know it arrived).  drop_always: close at DATA,
        # before anything is taken.
        self.drop_once = set(drop_once)
        self.drop_always = set(drop_always)
        # tempfail: {address: n} answers n RCPTs for address with 450.
        self.tempfail = dict(tempfail or {})
        self.delay = delay
        self.messages = []
        self.auth_attempts = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def message_ids(self):
        with self.lock:
            return [m[3] for m in self.messages]

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,),
                             daemon=True).start()

    def _session(self, conn):
        try:
            self._dialogue(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _dialogue(self, conn):
        f = conn.makefile("rb")
        tls = authed = False

        def send(line):
            conn.sendall(line.encode() + b"\r\n")

        send("220 fake.test ESMTP")
        mail_from, rcpts = None, []
        while True:
            line = f.readline(4096)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                ext = ["PIPELINING", "8BITMIME", "SIZE 67108864"]
                ext += ["AUTH PLAIN LOGIN"] if tls else ["STARTTLS"]
                send("250-fake.test")
                for i, e in enumerate(ext):
                    send(("250 " if i == len(ext) - 1 else "250-") + e)
            elif verb == "STARTTLS" and not tls:
                send("220 go ahead")
                conn = self.ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile("rb")
                tls = True
            elif verb == "AUTH" and tls:
                with self.lock:
                    self.auth_attempts += 1
                parts = cmd.split(" ")
                try:
                    raw = base64.b64decode(parts[2])
                    _, u, p = raw.split(b"\0")
                    good = (u.decode(), p.decode()) == (self.user,
                                                        self.password)
                except Exception:  # noqa: BLE001
                    good = False
                if good:
                    authed = True
                    send("235 2.7.0 ok")
                else:
                    send("535 5.7.8 bad credentials")
            elif verb == "MAIL":
                if not authed:
                    send("530 5.7.0 authentication required")
                    continue
                mail_from, rcpts = cmd[10:].strip("<>"), []
                send("250 2.1.0 ok")
            elif verb == "RCPT":
                addr = cmd[8:].strip().strip("<>")
                if mail_from is None:
                    send("503 5.5.1 MAIL first")
                elif addr in self.refuse:
                    send("550 5.1.1 no such mailbox")
                elif self.tempfail.get(addr, 0) > 0:
                    self.tempfail[addr] -= 1
                    send("450 4.7.1 rate limit exceeded, try later")
                else:
                    rcpts.append(addr)
                    send("250 2.1.5 ok")
            elif verb == "DATA":
                if not rcpts:
                    send("554 5.5.1 no valid recipients")
                    continue
                if self.drop_always & set(rcpts):
                    return
                send("354 go on")
                data = []
                while True:
                    d = f.readline(1 << 20)
                    if not d:
                        return          # broken mid-message: not taken
                    if d == b".\r\n":
                        break
                    if d.startswith(b"."):
                        d = d[1:]
                    data.append(d)
                raw = b"".join(data)
                m = re.search(rb"^Message-ID:\s*(<[^>\r\n]*>)", raw,
                              re.M | re.I)
                mid = m.group(1).decode() if m else None
                with self.lock:
                    self.messages.append((mail_from, list(rcpts), raw,
                                          mid))
                with self.lock:
                    dropped = self.drop_once & set(rcpts)
                    self.drop_once -= dropped
                if dropped:
                    return
                if self.delay:
                    time.sleep(self.delay)
                send("250 2.0.0 queued")
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                send("250 ok")
            elif verb == "NOOP":
                send("250 ok")
            elif verb == "QUIT":
                send("221 bye")
                return
            else:
                send("502 5.5.2 unknown command")


class Pki:
    """A scratch govmail-ca with accounts; files under ctl.dir."""

    def __init__(self, t, port=None, name="a"):
        self.t = t
        self.port = port or 2080
        self.base = f"http://127.0.0.1:{self.port}"
        self.ctl = Ctl(t, name=name, extra=("[ca]\n"
                                 "dir = ca\n"
                                 f"base_url = {self.base}\n"
                                 f"listen = 127.0.0.1:{self.port}\n"
                                 "passphrase_file = pass\n"))
        self.dir = self.ctl.dir
        with open(self.path("pass"), "w") as f:
            f.write("notice test passphrase\n")
        os.chmod(self.path("pass"), 0o600)
        self.ctl.must("domain", "add", DOMAIN)
        p = self.ca("init")
        t.ok(p.returncode == 0, "govmail-ca init", p.stderr)
        self.root = os.path.join(self.dir, "ca", "root.crt")
        p = self.ca("issue-server", "--dns", "localhost", "--ip",
                    "127.0.0.1", "--key-out", self.path("tls.key"),
                    "--cert-out", self.path("tls.crt"))
        t.ok(p.returncode == 0, "govmail-ca issue-server for localhost",
             p.stderr)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, *args):
        return self.t.run([CA, "-c", self.ctl.conf] + list(args))

    def official(self, local="water", name="Water Bureau"):
        addr = f"{local}@{DOMAIN}"
        self.ctl.ok(self.ctl.user(addr, "official", "--name", name,
                                  "--org", "Water Bureau"),
                    f"user add {addr}")
        return addr, self.issue("official", addr)

    def citizen(self, local, idno=RESIDENT_ID_OK, cert=True,
                key_type=None):
        addr = f"{local}@{DOMAIN}"
        # Surname first, then the given name: the CA splits it so.
        self.ctl.user(addr, "citizen", "--name", f"{local.capitalize()} Wei",
                      "--resident-id", idno, "--verified")
        if not cert:
            return addr, None
        extra = ("--key-type", key_type) if key_type else ()
        return addr, self.issue("citizen", addr, *extra)

    def issue(self, profile, addr, *extra):
        """PKCS#12 for addr: (p12 path, password file)."""
        local = addr.split("@")[0]
        p12 = self.path(local + ".p12")
        p = self.ca("issue", "--profile", profile, addr, "--generate",
                    "--p12", p12, *extra)
        self.t.ok(p.returncode == 0, f"issue {profile} {addr}", p.stderr)
        m = re.search(r"^password (\S+)$", p.stdout, re.M)
        pwf = self.path(local + ".p12pass")
        with open(pwf, "w") as f:
            f.write((m.group(1) if m else "") + "\n")
        return p12, pwf

    def p12_key(self, p12, pwf):
        """PEM certificate and key files of a PKCS#12."""
        pw = open(pwf).read().strip()
        crt, key = p12 + ".crt", p12 + ".key"
        self.t.run(["openssl", "pkcs12", "-in", p12, "-passin",
                    "pass:" + pw, "-nokeys", "-clcerts", "-out", crt])
        self.t.run(["openssl", "pkcs12", "-in", p12, "-passin",
                    "pass:" + pw, "-nocerts", "-nodes", "-out", key])
        return crt, key


def verify_signed(t, raw, root, tmp, name):
    """openssl cms -verify -purpose smimesign; returns the signed content
    (bytes) or None."""
    src = os.path.join(tmp, name + ".eml")
    out = os.path.join(tmp, name + ".out")
    with open(src, "wb") as f:
        f.write(raw)
    p = t.run(["openssl", "cms", "-verify", "-in", src, "-CAfile", root,
               "-purpose", "smimesign", "-out", out])
    if p.returncode != 0:
        t.diag(p.stderr)
        return None
    with open(out, "rb") as f:
        return f.read()


def split_signed(raw):
    """(signed content bytes, DER signature) of a multipart/signed."""
    m = re.search(rb'boundary="?([^";\r\n]+)"?', raw)
    b = b"--" + m.group(1)
    start = raw.index(b + b"\r\n") + len(b) + 2
    end = raw.index(b"\r\n" + b + b"\r\n", start)
    sigpart = raw[end + len(b) + 4:]
    sigpart = sigpart[:sigpart.index(b"\r\n" + b + b"--")]
    return raw[start:end], base64.b64decode(sigpart.split(b"\r\n\r\n", 1)[1])


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(entity_bytes):
    """All text/* parts of a MIME entity, decoded, joined."""
    msg = parse(entity_bytes)
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            out.append(part.get_content())
    return "\n".join(out)


class OfficialSmtpd:
    """A govmail-smtpd under test (smtpdenv) whose configuration also
    holds a CA (its [ca] in the daemon's folder), the domain DOMAIN, the
    official water@ with a PKCS#12 from that CA (water.p12, its password
    in water.pass, the official's SMTP password in smtp.pass) and the
    citizens c1 .. c4@.  The daemon is not started: d.start()."""

    def __init__(self, t, name, extra_smtpd=""):
        from smtpdenv import Smtpd, _as_user
        self.t = t
        self._as_user = _as_user
        self.d = d = Smtpd(t, name=name, extra_smtpd=extra_smtpd,
                           extra="[ca]\ndir = ca\n"
                                 "base_url = http://127.0.0.1:2080\n"
                                 "passphrase_file = capass\n")
        with open(self.path("capass"), "w") as f:
            f.write(f"{name} passphrase\n")
        os.chmod(self.path("capass"), 0o600)
        if os.geteuid() == 0:
            t.run(["chown", "nobody:nogroup", self.path("capass")])
        self.official = f"water@{DOMAIN}"
        self.citizens = [f"c{i}@{DOMAIN}" for i in range(1, 5)]
        d.ctl("domain", "add", DOMAIN)
        d.ctl("user", "add", self.official, "--class", "official",
              "--name", "Water Bureau", "--org", "Water Bureau",
              input="official-pw\n")
        for c in self.citizens:
            d.user(c, "citizen-pw")
        p = self.ca("init")
        t.ok(p.returncode == 0, "govmail-ca init in the daemon's "
             "configuration", p.stderr)
        p = self.ca("issue", "--profile", "official", self.official,
                    "--generate", "--p12", self.path("water.p12"))
        t.ok(p.returncode == 0, "official PKCS#12", p.stderr)
        pw = [ln.split(" ", 1)[1] for ln in p.stdout.splitlines()
              if ln.startswith("password ")]
        with open(self.path("water.pass"), "w") as f:
            f.write((pw[0] if pw else "") + "\n")
        with open(self.path("smtp.pass"), "w") as f:
            f.write("official-pw\n")

    def path(self, name):
        return os.path.join(self.d.dir, name)

    def ca(self, *args):
        return self.t.run(self._as_user() + [CA, "-c", self.d.conf]
                          + list(args), timeout=120)
