#!/usr/bin/env python3
"""govmail-smtpd outbound: an authenticated user's mail for another domain
goes into the queue and the delivery agent hands it to "the remote domain"
(a small SMTP server in this test, reached as [smtpd] relayhost) over
STARTTLS; a temporary failure (451) is retried; a permanent one (550) and
one still failing after queue_lifetime come back to the sender as an RFC
3464 DSN in her INBOX; a server that injects a reply before its TLS
handshake gets no command executed from it; unauthenticated relay stays
refused."""
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd, tls_client_ctx  # noqa: E402
from fakesmtp import FakeSmtp  # noqa: E402

t = Suite()
D = "city.example"
R = "remote.example"
A = f"alice@{D}"


class Remote(FakeSmtp):
    """451 once for temp@, 550 for perm@, 451 always for never@, 250 for
    the rest; STARTTLS with a throwaway certificate.  got holds
    (mail_from, [rcpts], data, tls); params every MAIL as (sender, number
    of messages got before it, its parameters): a list, so that a retry
    of another message at the same moment cannot hide one."""

    def __init__(self, certdir):
        self.params = []
        super().__init__(certdir)

    def rcpt_reply(self, r, earlier):
        if r.startswith("perm@"):
            return "550 5.1.1 no such user here"
        if r.startswith("never@") or (r.startswith("temp@") and
                                      earlier == 0):
            return "451 4.3.0 try again later"
        return "250 ok"

    def on_mail(self, sender, params):
        self.params.append((sender, len(self.got), params))


d = Smtpd(t, extra_smtpd="queue_retry = 1s\nqueue_lifetime = 6s\n"
          "relayhost = 127.0.0.1:{port}\n".replace(
              "{port}", "0"))
remote = Remote(d.dir)
with open(d.conf) as fh:
    conf = fh.read().replace("relayhost = 127.0.0.1:0",
                             f"relayhost = 127.0.0.1:{remote.port}")
with open(d.conf, "w") as fh:
    fh.write(conf)
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.start()
ctx = tls_client_ctx()


def submit(rcpts, subject):
    return d.submit(A, "alice-pw", rcpts, f"From: {A}\r\nSubject: "
                    f"{subject}\r\n\r\n.leading dot\r\nbody\r\n".encode())


def subjects():
    return [ln.split("\t")[3] for ln in d.ls(A)]


def wait_inbox(pred, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        for uid, ln in enumerate(d.ls(A), 1):
            raw = d.cat(A, uid)
            if pred(raw):
                return raw
        time.sleep(0.5)
    return None


def relayed(t):
    t.eq(submit([f"ok@{R}", A], "out one"), {},
         "a submission to a remote and a local recipient gets 250")
    hits = remote.wait(lambda g: b"Subject: out one" in g[2])
    t.eq(len(hits), 1, "the remote domain got the message once")
    if hits:
        frm, rcpts, data, tls = hits[0]
        t.eq(frm, A, "with alice as envelope sender")
        t.eq(rcpts, [f"ok@{R}"], "to the remote recipient only")
        t.ok(tls, "over STARTTLS")
        t.ok(b"\r\n.leading dot\r\n" in data,
             "a leading dot survives the dot-stuffing", data[-80:])
        t.ok(b"Authentication-Results: mx.test.example" in data,
             "with our trace headers", data[:300])
    t.ok("out one" in subjects(), "the local copy was delivered too")


def retried(t):
    t.eq(submit([f"temp@{R}"], "out temp"), {}, "queued for temp@")
    hits = remote.wait(lambda g: b"Subject: out temp" in g[2])
    t.eq(len(hits), 1, "delivered after the 451 on a retry")
    t.ok(remote.tries.get(f"temp@{R}", 0) >= 2, "it took two attempts")


def bounced(t):
    t.eq(submit([f"perm@{R}"], "out perm"), {}, "queued for perm@")
    raw = wait_inbox(lambda r: b"Final-Recipient: rfc822; perm@" in r)
    t.ok(raw is not None, "a DSN for the 550 reached alice's INBOX")
    if raw:
        t.ok(b"multipart/report; report-type=delivery-status" in raw,
             "a multipart/report", raw[:600])
        t.ok(b"Action: failed" in raw and b"Status: 5.1.1" in raw,
             "Action: failed, Status 5.1.1 (the remote's)")
        t.ok(b"550 5.1.1 no such user here" in raw,
             "with the remote server's reply")
        t.ok(b"Subject: out perm" in raw, "and the original's header")


def expired(t):
    t.eq(submit([f"never@{R}"], "out never"), {}, "queued for never@")
    raw = wait_inbox(lambda r: b"Final-Recipient: rfc822; never@" in r,
                     timeout=40)
    t.ok(raw is not None, "after queue_lifetime a DSN comes back")
    if raw:
        t.ok(b"Status: 4.4.7" in raw, "Status 4.4.7 (expired)", raw[:900])


def injection(t):
    remote.inject = True
    t.eq(submit([f"inj@{R}"], "out injected"), {}, "queued for inj@")
    hits = remote.wait(lambda g: b"Subject: out injected" in g[2])
    t.eq(len(hits), 1,
         "delivered normally although the server injected a reply")
    remote.inject = False


def eightbit_utf8(t):
    s = smtplib.SMTP_SSL("127.0.0.1", d.subs, context=ctx, timeout=30)
    s.login(A, "alice-pw")
    body = f"From: {A}\r\nSubject: out 8bit\r\n\r\n你好\r\n".encode()
    t.eq(s.sendmail(A, [f"ok@{R}"], body), {}, "an 8-bit message queued")
    before = len(remote.got)
    hits = remote.wait(lambda g: b"Subject: out 8bit" in g[2])
    t.eq(len(hits), 1, "delivered")
    with remote.lock:
        params = [p for snd, n, p in remote.params
                  if snd == A and n >= before]
    t.ok("BODY=8BITMIME" in params, "with BODY=8BITMIME (the server "
         "offers 8BITMIME)", params)
    r = s.sendmail(A, [f"用户@{R}"], f"From: {A}\r\nSubject: out utf8\r\n"
                   f"\r\nx\r\n".encode(), mail_options=["SMTPUTF8"])
    t.eq(r, {}, "a UTF-8 remote recipient is queued")
    s.quit()
    raw = wait_inbox(lambda r: b"Subject: out utf8" in r and
                     b"Final-Recipient" in r)
    t.ok(raw is not None and b"5.6.7" in raw, "a server without SMTPUTF8: "
         "the sender gets a DSN saying 5.6.7", raw and raw[:900])


def no_open_relay(t):
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    s.ehlo("c")
    s.docmd("MAIL", "FROM:<x@elsewhere.example>")
    code, _ = s.docmd("RCPT", f"TO:<ok@{R}>")
    t.eq(code, 554, "unauthenticated relay is still refused")
    s.quit()


for case in (relayed, retried, bounced, expired, injection, eightbit_utf8,
             no_open_relay):
    t.run_case(case)
d.stop()
t.done()
