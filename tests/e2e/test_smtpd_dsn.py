#!/usr/bin/env python3
"""govmail-smtpd acts on the DSN parameters of RFC 3461: a fake remote
domain on loopback (reached as [smtpd] relayhost) refuses some recipients
for good, keeps others waiting, and announces DSN or not; the reports come
back to the sender's INBOX (RFC 3464) and are checked field by field:
- a failure with RET=HDRS carries only the header, without RET the whole
  message; ENVID comes back as Original-Envelope-Id and ORCPT as
  Original-Recipient, xtext-decoded (UTF-8 ORCPT as RFC 6533 xtext);
- NOTIFY=NEVER: that recipient is in no report;
- NOTIFY=SUCCESS: "delivered" for a local recipient at the end of DATA,
  "relayed" for a remote server without DSN, and with a server that
  announces DSN the parameters are passed on in MAIL and RCPT instead
  (the fake server records them) and no "relayed" report is made;
- NOTIFY=DELAY: one "delayed" report once [smtpd] delay_warning (1s here)
  has passed, not repeated on later retries;
- malformed parameters are answered 501 5.5.4."""
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
B = f"bob@{D}"


class Remote(FakeSmtp):
    """550 for perm*@, 451 always for slow@, 250 for the rest; announces
    DSN when self.dsn is set; got holds ([rcpts], data)."""

    def __init__(self):
        self.dsn = False
        super().__init__()

    def ehlo_lines(self, tls):
        return (["DSN"] if self.dsn else []) + ["8BITMIME"]

    def rcpt_reply(self, r, earlier):
        if r.startswith("perm"):
            return "550 5.1.1 no such user here"
        if r.startswith("slow@"):
            return "451 4.3.0 try again later"
        return "250 ok"

    def stored(self, sender, rcpts, data, tls):
        self.got.append((rcpts, data))


remote = Remote()
d = Smtpd(t, extra_smtpd="queue_retry = 1s\nqueue_lifetime = 10m\n"
          "delay_warning = 1s\n"
          f"relayhost = 127.0.0.1:{remote.port}\noutbound_tls = none\n")
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.user(B, "bob-pw")
d.start()
ctx = tls_client_ctx()


def submit(subject, rcpts, mail_opts=(), body="body line\r\n",
           utf8=False):
    """rcpts: [(address, [params])].  Returns the replies of RCPT."""
    s = smtplib.SMTP_SSL("127.0.0.1", d.subs, context=ctx, timeout=30)
    s.login(A, "alice-pw")
    s.ehlo_or_helo_if_needed()
    opts = list(mail_opts) + (["SMTPUTF8"] if utf8 else [])
    code, _ = s.mail(A, opts)
    assert code == 250, code
    codes = [s.rcpt(r, list(p))[0] for r, p in rcpts]
    msg = (f"From: {A}\r\nSubject: {subject}\r\nMessage-ID: "
           f"<{subject.replace(' ', '.')}@{D}>\r\n\r\n{body}")
    code, _ = s.data(msg.encode())
    s.quit()
    return codes, code


def inbox():
    """Alice's messages, raw."""
    return [d.cat(A, ln.split("\t")[0]) for ln in d.ls(A)]


def dsns(pred):
    return [m for m in inbox() if b"report-type=delivery-status" in m
            and pred(m)]


def wait_dsn(pred, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        hits = dsns(pred)
        if hits:
            return hits[0]
        time.sleep(0.5)
    return None


def failure_hdrs(t):
    codes, end = submit("dsn hdrs", [(f"perm1@{R}", [
        "NOTIFY=FAILURE", f"ORCPT=rfc822;orig+2Bperm1@{R}"])],
        mail_opts=["RET=HDRS", "ENVID=QQ+2B314"])
    t.eq((codes, end), ([250], 250), "RET=HDRS ENVID ORCPT accepted")
    raw = wait_dsn(lambda m: b"Subject: dsn hdrs" in m)
    t.ok(raw is not None, "a failure DSN reached the sender")
    if raw is None:
        return
    t.ok(b"Action: failed\r\nStatus: 5.1.1\r\n" in raw,
         "Action failed, Status taken from the remote's 5.1.1", raw[:1500])
    t.ok(b"Original-Envelope-Id: QQ+314\r\n" in raw,
         "ENVID xtext-decoded in Original-Envelope-Id")
    t.ok(f"Original-Recipient: rfc822;orig+perm1@{R}\r\n".encode() in raw,
         "ORCPT xtext-decoded in Original-Recipient")
    t.ok(f"Final-Recipient: rfc822; perm1@{R}\r\n".encode() in raw,
         "Final-Recipient names the recipient")
    t.ok(b"Content-Type: text/rfc822-headers" in raw and
         b"body line" not in raw, "RET=HDRS: the header only, no body")


def failure_full(t):
    codes, end = submit("dsn full", [(f"perm2@{R}", [])],
                        body="the whole body\r\n")
    t.eq((codes, end), ([250], 250), "a plain submission to perm2@")
    raw = wait_dsn(lambda m: b"Subject: dsn full" in m)
    t.ok(raw is not None and b"Content-Type: message/rfc822" in raw and
         b"the whole body" in raw,
         "without RET a failure returns the whole message (message/rfc822)",
         raw and raw[-600:])


def never(t):
    codes, end = submit("dsn never", [
        (f"perm3@{R}", ["NOTIFY=NEVER"]), (f"perm4@{R}", [])])
    t.eq((codes, end), ([250, 250], 250), "NOTIFY=NEVER accepted")
    raw = wait_dsn(lambda m: b"Subject: dsn never" in m)
    t.ok(raw is not None and f"perm4@{R}".encode() in raw,
         "the default recipient's failure is reported")
    t.ok(raw is not None and f"perm3@{R}".encode() not in raw,
         "the NOTIFY=NEVER recipient is in no report", raw and raw[:1500])
    t.eq(len(dsns(lambda m: b"Subject: dsn never" in m)), 1,
         "one report for the message")


def utf8_orcpt(t):
    codes, end = submit("dsn utf8", [(f"perm5@{R}", [
        f"ORCPT=utf-8;用户@{R}"])], utf8=True)
    t.eq((codes, end), ([250], 250), "ORCPT=utf-8 with SMTPUTF8 accepted")
    raw = wait_dsn(lambda m: b"Subject: dsn utf8" in m)
    t.ok(raw is not None and
         f"Original-Recipient: utf-8;\\x{{7528}}\\x{{6237}}@{R}\r\n"
         .encode() in raw,
         "a UTF-8 ORCPT comes back as RFC 6533 utf-8-addr-xtext",
         raw and raw[:1500])


def success_local(t):
    codes, end = submit("dsn local", [(B, [
        "NOTIFY=SUCCESS", f"ORCPT=rfc822;{B}"])], mail_opts=["ENVID=loc1"])
    t.eq((codes, end), ([250], 250), "NOTIFY=SUCCESS to a local account")
    raw = wait_dsn(lambda m: b"Subject: dsn local" in m)
    t.ok(raw is not None, "a success DSN is in the sender's INBOX")
    if raw is None:
        return
    t.ok(f"Final-Recipient: rfc822; {B}\r\nAction: delivered\r\n"
         f"Status: 2.0.0\r\n".encode() in raw,
         "Action: delivered, Status 2.0.0", raw[:1500])
    t.ok(b"Original-Envelope-Id: loc1\r\n" in raw and
         f"Original-Recipient: rfc822;{B}\r\n".encode() in raw,
         "with ENVID and ORCPT")
    t.ok(b"text/rfc822-headers" in raw and b"body line" not in raw,
         "a success report returns the header only (RFC 3461 4.3)")
    t.ok(any(b"Subject: dsn local" in d.cat(B, ln.split("\t")[0])
             for ln in d.ls(B)), "and bob got the message")
    # The report is made before the 250 to DATA: none is made here.
    codes, end = submit("dsn local plain", [(B, [])])
    t.eq(dsns(lambda m: b"Subject: dsn local plain" in m), [],
         "without NOTIFY=SUCCESS no success report")


def relayed(t):
    remote.dsn = False
    codes, end = submit("dsn relayed", [(f"ok1@{R}", ["NOTIFY=SUCCESS"])])
    t.eq((codes, end), ([250], 250), "NOTIFY=SUCCESS to a remote")
    t.eq(len(remote.wait(lambda g: f"ok1@{R}" in g[0])), 1,
         "the remote (without DSN) got it")
    raw = wait_dsn(lambda m: b"Subject: dsn relayed" in m)
    t.ok(raw is not None and
         f"Final-Recipient: rfc822; ok1@{R}\r\nAction: relayed\r\n"
         .encode() in raw, "Action: relayed (RFC 3461 5.2.2.2)",
         raw and raw[:1500])
    with remote.lock:
        lines = [ln for ln in remote.lines if f"ok1@{R}" in ln]
    t.ok(lines and all("NOTIFY" not in ln for ln in lines),
         "no NOTIFY to a server that does not announce DSN", lines)


def passed_on(t):
    remote.dsn = True
    before = len(remote.lines)
    codes, end = submit("dsn passed", [(f"ok2@{R}", [
        "NOTIFY=SUCCESS,DELAY", f"ORCPT=rfc822;x+2Bok2@{R}"])],
        mail_opts=["RET=HDRS", "ENVID=ENV+2B2"])
    t.eq((codes, end), ([250], 250), "a submission for a DSN server")
    t.eq(len(remote.wait(lambda g: f"ok2@{R}" in g[0])), 1,
         "the remote (with DSN) got it")
    with remote.lock:
        lines = remote.lines[before:]
    mail = [ln for ln in lines if ln.upper().startswith("MAIL")]
    rcpt = [ln for ln in lines if f"ok2@{R}" in ln]
    t.ok(mail and "RET=HDRS" in mail[-1] and "ENVID=ENV+2B2" in mail[-1],
         "MAIL carries RET and ENVID on", mail)
    t.ok(rcpt and "NOTIFY=SUCCESS,DELAY" in rcpt[-1] and
         f"ORCPT=rfc822;x+2Bok2@{R}" in rcpt[-1],
         "RCPT carries NOTIFY and ORCPT on, still xtext", rcpt)
    # A later message to a server without DSN shows the agent has
    # finished with this one; no "relayed" report may exist for it.
    remote.dsn = False
    submit("dsn marker", [(f"ok3@{R}", ["NOTIFY=SUCCESS"])])
    wait_dsn(lambda m: b"Subject: dsn marker" in m)
    t.eq(dsns(lambda m: b"Subject: dsn passed" in m), [],
         "no relayed report when the remote server takes over DSN")


def delayed(t):
    remote.dsn = False
    codes, end = submit("dsn slow", [(f"slow@{R}", [
        "NOTIFY=DELAY,FAILURE"])])
    t.eq((codes, end), ([250], 250), "NOTIFY=DELAY to a slow remote")
    raw = wait_dsn(lambda m: b"Subject: dsn slow" in m)
    t.ok(raw is not None and b"Action: delayed\r\nStatus: 4.3.0\r\n" in raw,
         "a delayed report after delay_warning", raw and raw[:1500])
    t.ok(remote.wait_tries(f"slow@{R}", 5),
         "the agent went on retrying (5 attempts)")
    t.eq(len(dsns(lambda m: b"Subject: dsn slow" in m)), 1,
         "the delayed report is not repeated")


def refused(t):
    s = smtplib.SMTP_SSL("127.0.0.1", d.subs, context=ctx, timeout=30)
    s.login(A, "alice-pw")
    s.ehlo_or_helo_if_needed()
    cases = [
        ("MAIL", f"FROM:<{A}> ENVID={'e' * 100}", 250,
         "ENVID of 100 characters (N)"),
        ("MAIL", f"FROM:<{A}> ENVID={'e' * 101}", 501,
         "ENVID of 101 characters (N+1)"),
        ("MAIL", f"FROM:<{A}> ENVID=a+zz", 501, "ENVID not xtext"),
        ("MAIL", f"FROM:<{A}> RET=NONE", 501, "unknown RET"),
        ("RCPT", f"TO:<{B}> NOTIFY=NEVER,SUCCESS", 501,
         "NOTIFY=NEVER with SUCCESS"),
        ("RCPT", f"TO:<{B}> NOTIFY=ALWAYS", 501, "unknown NOTIFY value"),
        ("RCPT", f"TO:<{B}> ORCPT=rfc822;{'o' * 493}", 250,
         "ORCPT of 500 characters (N)"),
        ("RCPT", f"TO:<{B}> ORCPT=rfc822;{'o' * 494}", 501,
         "ORCPT of 501 characters (N+1)"),
        ("RCPT", f"TO:<{B}> ORCPT=rfc822;a=b", 501, "ORCPT not xtext"),
    ]
    for verb, arg, want, what in cases:
        if verb == "MAIL":
            s.rset()
        else:
            s.rset()
            s.docmd("MAIL", f"FROM:<{A}>")
        code, text = s.docmd(verb, arg)
        t.eq(code, want, f"{what}: {want}")
        if want == 501:
            t.ok(text.startswith(b"5.5.4 "), f"{what}: 5.5.4 and a "
                 "reason", text)
    s.quit()


for case in (failure_hdrs, failure_full, never, utf8_orcpt, success_local,
             relayed, passed_on, delayed, refused):
    t.run_case(case)
d.stop()
t.done()
