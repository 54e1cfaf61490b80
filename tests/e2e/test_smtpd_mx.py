#!/usr/bin/env python3
"""govmail-smtpd outbound by MX, with the system resolver for real: the
test runs itself in a network and mount namespace of its own (unshare),
where a small DNS server on 127.0.0.1:53 is the only nameserver
(/etc/resolv.conf bind-mounted over) and "remote domains" are SMTP
servers on port 25 of other loopback addresses.  Without namespaces (not
root, no unshare) it is skipped.

  - the best MX refuses connections: the next MX takes the message;
  - the best MX greets with 421: the next MX takes it;
  - the best MX never greets: after outbound_connect_timeout, the next;
  - a domain without MX: its own address (the implicit MX);
  - a null MX (RFC 7505): a DSN with 5.1.10 at once, no connection;
  - a domain that does not exist: a DSN with 5.1.2 at once;
  - a resolver failure (SERVFAIL): the message waits in the queue, no DSN,
    and goes once the resolver answers;
  - a Chinese domain (SMTPUTF8): its MX looked up by its A-labels;
  - to a server without SMTPUTF8, an address whose only UTF-8 is its
    domain goes with the domain as A-labels, without SMTPUTF8.
"""
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

NS_ENV = "GOVMAIL_TEST_MX_NS"

if os.environ.get(NS_ENV) != "1":
    # Outside: run this file again inside the namespaces.
    why = None
    if os.geteuid() != 0:
        why = "needs root for its namespaces"
    elif shutil.which("unshare") is None:
        why = "no unshare"
    elif subprocess.run(["unshare", "--mount", "--net", "true"],
                        capture_output=True).returncode != 0:
        why = "cannot make a network and mount namespace here"
    if why is not None:
        print(f"1..0 # SKIP {why}", flush=True)
        sys.exit(0)
    env = dict(os.environ)
    env[NS_ENV] = "1"
    os.execvpe("unshare", ["unshare", "--mount", "--net", "--",
                           sys.executable, os.path.abspath(__file__)]
               + sys.argv[1:], env)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd  # noqa: E402
from fakesmtp import FakeSmtp  # noqa: E402

t = Suite()
D = "city.example"
A = f"alice@{D}"


def loopback_up():
    """`ip link set lo up`, without needing iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, ifr))[1]
    fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo",
                                             flags | iff_up))
    s.close()


# -- the DNS server -------------------------------------------------------
ZONE = {
    "good.test": {"MX": [(20, "mx-up.good.test"),
                         (10, "mx-dead.good.test")]},
    "mx-dead.good.test": {"A": ["127.0.0.3"]},
    "mx-up.good.test": {"A": ["127.0.0.4"]},
    "busy.test": {"MX": [(10, "mx.busy.test"), (20, "mx-up.good.test")]},
    "mx.busy.test": {"A": ["127.0.0.5"]},
    "slow.test": {"MX": [(10, "mx.slow.test"), (20, "mx-up.good.test")]},
    "mx.slow.test": {"A": ["127.0.0.6"]},
    "nomx.test": {"A": ["127.0.0.4"]},
    "nullmx.test": {"MX": [(0, "")]},
    "xn--mxtq1m.test": {"MX": [(10, "mx-up.good.test")]},   # 政府.test
    "xn--fiqs8s.test": {"MX": [(10, "mx.plain.test")]},     # 中国.test
    "mx.plain.test": {"A": ["127.0.0.7"]},
}
SERVFAIL = {"broken.test"}
queries = []


def dns_name(name):
    out = b""
    for label in name.split(".") if name else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_answer(q):
    qid, flags = struct.unpack(">HH", q[:4])
    i, labels = 12, []
    while q[i] != 0:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    name = ".".join(labels).lower()
    queries.append((name, qtype))
    rcode, answers = 0, []
    if name in SERVFAIL:
        rcode = 2
    elif name not in ZONE:
        rcode = 3
    else:
        zone = ZONE[name]
        rdatas = []
        if qtype == 15:
            rdatas = [struct.pack(">H", p) + dns_name(h)
                      for p, h in zone.get("MX", [])]
        elif qtype == 1:
            rdatas = [socket.inet_aton(a) for a in zone.get("A", [])]
        for rd in rdatas:
            answers.append(b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 60,
                                                     len(rd)) + rd)
    hdr = struct.pack(">HHHHHH", qid, 0x8580 | (flags & 0x0100) | rcode,
                      1, len(answers), 0, 0)
    return hdr + question + b"".join(answers)


def dns_serve(sock):
    while True:
        try:
            q, peer = sock.recvfrom(4096)
            sock.sendto(dns_answer(q), peer)
        except OSError:
            return
        except Exception:  # noqa: BLE001 - a query we cannot read
            continue


def hosts_by_dns():
    """Whether getaddrinfo asks the DNS (nsswitch "hosts: files dns"),
    not a local daemon (systemd-resolved, nscd) that would not see the
    test's server."""
    try:
        with open("/etc/nsswitch.conf") as fh:
            for ln in fh:
                if ln.split(":")[0].strip() == "hosts":
                    return ln.split(":", 1)[1].split() == ["files", "dns"]
    except OSError:
        pass
    return False


loopback_up()
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
threading.Thread(target=dns_serve, args=(dns,), daemon=True).start()
resolv = os.path.join(t.tmp, "resolv.conf")
with open(resolv, "w") as fh:
    fh.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
if not hosts_by_dns() or subprocess.run(
        ["mount", "--bind", resolv, "/etc/resolv.conf"],
        capture_output=True).returncode != 0:
    print("1..0 # SKIP the system resolver cannot be pointed at the test's "
          "DNS server here", flush=True)
    t._cleanup()
    sys.exit(0)

# -- the remote servers and govmail-smtpd -------------------------------------
class Utf8Smtp(FakeSmtp):
    def ehlo_lines(self, tls):
        return super().ehlo_lines(tls) + ["SMTPUTF8"]


up = Utf8Smtp(host="127.0.0.4", port=25)
plain = FakeSmtp(host="127.0.0.7", port=25)     # no SMTPUTF8
busy = FakeSmtp(host="127.0.0.5", port=25, greeting="421 4.3.2 busy")
# Takes connections (the kernel does) and never says a word.
silent = socket.socket()
silent.bind(("127.0.0.6", 25))
silent.listen(8)
d = Smtpd(t, extra_smtpd="queue_retry = 1s\nqueue_lifetime = 1h\n"
          "outbound_connect_timeout = 2s\n")
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.start()


def submit(rcpt, subject):
    return d.submit(A, "alice-pw", [rcpt], f"From: {A}\r\nSubject: "
                    f"{subject}\r\n\r\nbody\r\n".encode())


def dsn_for(subject, timeout=20):
    """The DSN in alice's INBOX about the message with subject."""
    end = time.time() + timeout
    while time.time() < end:
        for uid, _ in enumerate(d.ls(A), 1):
            raw = d.cat(A, uid)
            if b"delivery-status" in raw and subject.encode() in raw:
                return raw
        time.sleep(0.3)
    return None


def got(subject, timeout=20):
    return up.wait(lambda g: f"Subject: {subject}".encode() in g[2],
                   timeout=timeout)


def dead_mx(t):
    t.eq(submit("bob@good.test", "mx dead"), {}, "queued for good.test")
    hits = got("mx dead")
    t.eq(len(hits), 1, "the second MX took it: the best one refused")
    log = d.logtext()
    t.ok("event=outbound-next" in log and "ip=127.0.0.3" in log,
         "the refused MX was tried first, and logged", log[-1500:])
    t.ok(("good.test", 15) in queries, "the MX came from the resolver")


def busy_mx(t):
    before = busy.sessions
    t.eq(submit("carol@busy.test", "mx busy"), {}, "queued for busy.test")
    t.eq(len(got("mx busy")), 1,
         "the second MX took it: the best one greeted with 421")
    t.ok(busy.sessions > before, "the busy MX was tried first")


def silent_mx(t):
    t.eq(submit("hank@slow.test", "mx silent"), {}, "queued for slow.test")
    t.eq(len(got("mx silent")), 1,
         "the second MX took it: the best one never greeted")
    log = d.logtext()
    t.ok("ip=127.0.0.6" in log and "timeout" in log,
         "the silent MX was given up after the timeout", log[-1500:])


def implicit_mx(t):
    t.eq(submit("dave@nomx.test", "no mx"), {}, "queued for nomx.test")
    t.eq(len(got("no mx")), 1,
         "a domain without MX: delivered to its own address")


def null_mx(t):
    t.eq(submit("erin@nullmx.test", "null mx"), {}, "queued")
    raw = dsn_for("null mx")
    t.ok(raw is not None and b"Status: 5.1.10" in raw and
         b"Action: failed" in raw,
         "a null MX: a DSN with 5.1.10, without retrying", raw)
    t.eq(len(got("null mx", timeout=1)), 0, "and nothing was sent")


def no_domain(t):
    t.eq(submit("frank@nowhere.test", "nxdomain"), {}, "queued")
    raw = dsn_for("nxdomain")
    t.ok(raw is not None and b"Status: 5.1.2" in raw,
         "a domain that does not exist: a DSN with 5.1.2", raw)


def resolver_failure(t):
    t.eq(submit("gina@broken.test", "servfail"), {}, "queued")
    end = time.time() + 4
    while time.time() < end and ("broken.test", 15) not in queries:
        time.sleep(0.2)
    time.sleep(2)
    t.ok(("broken.test", 15) in queries, "the MX was asked for")
    t.ok(dsn_for("servfail", timeout=1) is None,
         "a resolver failure is temporary: no DSN")
    q = d.ctl("queue", "list").stdout
    t.ok("broken.test" in q, "the message waits in the queue", q)
    # The resolver recovers: the next try delivers.
    ZONE["broken.test"] = {"A": ["127.0.0.4"]}
    SERVFAIL.discard("broken.test")
    d.ctl("queue", "flush")
    t.eq(len(got("servfail", timeout=30)), 1,
         "once the resolver answers, the message goes")


def idn_domain(t):
    rcpt = "局长@政府.test"
    msg = (f"From: {A}\r\nTo: {rcpt}\r\nSubject: idn\r\n\r\n"
           "body\r\n").encode()
    t.eq(d.submit(A, "alice-pw", [rcpt], msg, ["SMTPUTF8"]), {},
         "queued for a Chinese domain (SMTPUTF8)")
    hits = got("idn")
    t.eq([h[1] for h in hits], [[rcpt]],
         "its MX, found by the A-labels, took it for the UTF-8 address")
    t.ok(("xn--mxtq1m.test", 15) in queries, "the MX of xn--mxtq1m.test "
         "was asked for", queries[-6:])


def idn_to_plain_server(t):
    rcpt = "mayor@中国.test"
    msg = (f"From: {A}\r\nTo: {rcpt}\r\nSubject: a-labels out\r\n\r\n"
           "body\r\n").encode()
    t.eq(d.submit(A, "alice-pw", [rcpt], msg, ["SMTPUTF8"]), {},
         "queued for a Chinese domain (SMTPUTF8 on submission)")
    hits = plain.wait(lambda g: b"Subject: a-labels out" in g[2])
    t.eq([h[1] for h in hits], [["mayor@xn--fiqs8s.test"]],
         "a server without SMTPUTF8 got it, the domain as A-labels")
    with plain.lock:
        mails = [ln for ln in plain.lines if ln.upper().startswith("MAIL")]
    t.ok(mails and "SMTPUTF8" not in mails[-1].upper(),
         "and MAIL without SMTPUTF8", mails[-1:])


for case in (dead_mx, busy_mx, silent_mx, implicit_mx, null_mx, no_domain,
             resolver_failure, idn_domain, idn_to_plain_server):
    t.run_case(case)
t.done()
