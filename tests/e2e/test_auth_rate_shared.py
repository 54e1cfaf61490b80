#!/usr/bin/env python3
"""Failed logins are limited per client address for the whole daemon, not
per worker: govmail-smtpd and govmail-imapd each run three workers, wrong
passwords arrive over connections spread over at least two of them (which
worker holds a connection is read from /proc), and after [limits]
auth_failures failures in total even the right password is refused,
whichever worker answers.  With a per-worker counter, the attempts after
the limit would have been answered 535 / AUTHENTICATIONFAILED by the
workers that had not yet seen that many.  smtpd's messages-per-address
limit ([smtpd] rate_ip_messages) is shared the same way: MAIL from one
address over several workers gets 450 after the limit in total."""
import base64
import os
import socket
import ssl
import time

from tap import Suite
from smtpdenv import Smtpd, Raw, tls_client_ctx
from imapdenv import Imapd

t = Suite()
D = "city.example"
A = f"alice@{D}"
LIMIT = 3               # [limits] auth_failures
WORKERS = 3
CONNS = 12              # connections opened at once, spread over workers
CONNS_MAX = 60          # more while they all landed on one worker


def workers_of(proc):
    out = os.popen(f"ps -o pid= --ppid {proc.pid}").read()
    return [int(x) for x in out.split()]


def wait_workers(proc, n):
    for _ in range(100):
        if len(workers_of(proc)) == n:
            return True
        time.sleep(0.1)
    return False


def tcp_inodes():
    """{(local_port, remote_port): inode} of loopback TCP sockets."""
    m = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for ln in f:
                    p = ln.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    m[(lport, rport)] = p[9]
        except OSError:
            pass
    return m


def owner(pids, server_port, client_port):
    """The worker PID that holds the server side of a connection."""
    for _ in range(50):
        inode = tcp_inodes().get((server_port, client_port))
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == \
                            f"socket:[{inode}]":
                        return pid
                except OSError:
                    pass
        time.sleep(0.05)
    return None


def spread(conns):
    """Order (pid, conn) pairs so that consecutive ones change worker."""
    by = {}
    for pid, c in conns:
        by.setdefault(pid, []).append(c)
    out = []
    while any(by.values()):
        for pid in sorted(by):
            if by[pid]:
                out.append((pid, by[pid].pop(0)))
    return out


def smtpd_case(t):
    d = Smtpd(t, workers=WORKERS,
              extra_smtpd=f"rate_ip_messages = {LIMIT}\n",
              extra_limits=f"auth_failures = {LIMIT}\n")
    d.ctl("domain", "add", D)
    d.user(A, "alice-pw")
    d.start()
    try:
        t.ok(wait_workers(d.proc, WORKERS), f"smtpd runs {WORKERS} workers")
        pids = workers_of(d.proc)
        ctx = tls_client_ctx()
        conns = []
        while len(conns) < CONNS or (len({p for p, _ in conns}) < 2 and
                                     len(conns) < CONNS_MAX):
            r = Raw(d.sub)
            conns.append((owner(pids, d.sub, r.s.getsockname()[1]), r))
        used = {p for p, _ in conns}
        t.ok(len(used) >= 2 and None not in used,
             "the connections landed on at least two workers", used)
        order = spread(conns)
        bad = base64.b64encode(f"\0{A}\0wrong".encode()).decode()
        good = base64.b64encode(f"\0{A}\0alice-pw".encode()).decode()
        codes = []
        for _, r in order:
            r.cmd("EHLO c")
            r.cmd("STARTTLS")
            ts = ctx.wrap_socket(r.s, server_hostname="localhost")
            r.s = ts
            r.f = ts.makefile("rb")
            r.cmd("EHLO c")
            codes.append(r.cmd("AUTH PLAIN " + (bad if len(codes) < LIMIT + 3
                                                else good))[0])
        first = [p for p, _ in order[:LIMIT + 1]]
        t.ok(len(set(first)) >= 2,
             f"the first {LIMIT + 1} attempts went to more than one worker",
             first)
        t.eq(codes[:LIMIT], [535] * LIMIT,
             f"{LIMIT} wrong passwords (N-1, N) over several workers: 535")
        t.eq(codes[LIMIT:LIMIT + 3], [454] * 3,
             f"attempts {LIMIT + 1}.. (N+1) are refused with 454 on every "
             "worker")
        t.ok(all(c == 454 for c in codes[LIMIT + 3:]),
             "even the right password is refused (454) on every worker",
             codes)
        t.eq(d.logtext().count("event=auth-failed"), LIMIT,
             "the log shows exactly the allowed number of failed checks")
        for _, r in order:
            r.close()
        # Messages per client address, on port 25, over the workers.
        conns = []
        while len(conns) < CONNS or (len({p for p, _ in conns}) < 2 and
                                     len(conns) < CONNS_MAX):
            r = Raw(d.smtp)
            conns.append((owner(pids, d.smtp, r.s.getsockname()[1]), r))
        order = spread(conns)
        codes = []
        for _, r in order[:LIMIT + 3]:
            r.cmd("EHLO c")
            codes.append(r.cmd("MAIL FROM:<x@elsewhere.example>")[0])
        first = [p for p, _ in order[:LIMIT + 1]]
        t.ok(len(set(first)) >= 2, "the first MAILs went to more than one "
             "worker", first)
        t.eq(codes, [250] * LIMIT + [450] * 3,
             f"rate_ip_messages {LIMIT}: MAIL N-1, N get 250, N+1 and on "
             "get 450 whichever worker answers")
        for _, r in order:
            r.close()
    finally:
        d.stop()


def imap_cmd(f, s, line):
    s.sendall(line.encode() + b"\r\n")
    tag = line.split()[0].encode()
    while True:
        ln = f.readline()
        if not ln or ln.startswith(tag + b" "):
            return ln.decode(errors="replace").strip()


def imapd_case(t):
    d = Imapd(t, workers=WORKERS,
              extra=f"[limits]\nauth_failures = {LIMIT}\n")
    d.ctl("domain", "add", D)
    d.user(A, "alice-pw")
    d.start()
    try:
        t.ok(wait_workers(d.proc, WORKERS), f"imapd runs {WORKERS} workers")
        pids = workers_of(d.proc)
        ctx = tls_client_ctx()
        conns = []
        while len(conns) < CONNS or (len({p for p, _ in conns}) < 2 and
                                     len(conns) < CONNS_MAX):
            s = socket.create_connection(("127.0.0.1", d.imaps), timeout=10)
            port = s.getsockname()[1]
            conns.append((owner(pids, d.imaps, port), s))
        used = {p for p, _ in conns}
        t.ok(len(used) >= 2 and None not in used,
             "IMAP connections landed on at least two workers", used)
        order = spread(conns)
        answers = []
        for _, raw in order:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            f = s.makefile("rb")
            f.readline()
            pw = "wrong" if len(answers) < LIMIT + 3 else "alice-pw"
            answers.append(imap_cmd(f, s, f'a LOGIN "{A}" "{pw}"'))
            s.close()
        first = [p for p, _ in order[:LIMIT + 1]]
        t.ok(len(set(first)) >= 2,
             f"the first {LIMIT + 1} IMAP logins went to more than one "
             "worker", first)
        t.ok(all("AUTHENTICATIONFAILED" in a for a in answers[:LIMIT]),
             f"{LIMIT} wrong IMAP passwords: NO [AUTHENTICATIONFAILED]",
             answers[:LIMIT])
        t.ok(all("UNAVAILABLE" in a for a in answers[LIMIT:]),
             "then every worker answers NO [UNAVAILABLE], even to the "
             "right password", answers[LIMIT:])
        t.eq(d.logtext().count("event=auth-failed"), LIMIT,
             "imapd logged exactly the allowed number of failed checks")
    finally:
        d.stop()


t.run_case(smtpd_case)
t.run_case(imapd_case)
t.done()
