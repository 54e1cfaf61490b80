#!/usr/bin/env python3
"""govmail-smtpd end to end, the ordinary paths: inbound mail over plain
SMTP and STARTTLS, submission with AUTH PLAIN and LOGIN after STARTTLS,
SMTPS (465), SMTPUTF8 with a Chinese local part, a Chinese domain reached
by its A-labels without SMTPUTF8, BDAT over a raw socket,
pipelining, one stored copy for several recipients, the trace headers,
quota answers, the submission policy (envelope sender and From:), list
posters, and swaks and curl as clients.  Every delivered message is read
back with govmailctl."""
import base64
import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd, Raw, tls_client_ctx  # noqa: E402

t = Suite()
D = "city.example"
A, B, Z = f"alice@{D}", f"bob@{D}", f"张三@{D}"
Q = f"full@{D}"
L = f"notices@{D}"
d = Smtpd(t)
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.user(B, "bob-pw")
d.user(Z, "zhang-pw")
d.user(Q, "full-pw", "--quota-messages", "1")
SMALL = f"small@{D}"
d.user(SMALL, "small-pw", "--quota-bytes", "2000")
IDN = "政府.example"          # xn--mxtq1m.example
M = f"mayor@{IDN}"
d.ctl("domain", "add", IDN)
d.user(M, "mayor-pw")
d.ctl("list", "add", L)
d.ctl("list", "member", "add", L, B)
d.ctl("list", "poster", "add", L, A)
d.start()
ctx = tls_client_ctx()


def msg(frm, subject, body="hello"):
    return (f"From: {frm}\r\nTo: x@{D}\r\nSubject: {subject}\r\n\r\n"
            f"{body}\r\n").encode()


def subjects(addr):
    return [ln.split("\t")[3] for ln in d.ls(addr)]


def inbound(t):
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    code, text = s.ehlo("client.example")
    t.eq(code, 250, "EHLO")
    for ext in (b"PIPELINING", b"SIZE 61440", b"8BITMIME", b"SMTPUTF8",
                b"ENHANCEDSTATUSCODES", b"CHUNKING", b"DSN", b"STARTTLS"):
        t.ok(ext in text, f"EHLO announces {ext.decode()}", text)
    t.ok(b"AUTH" not in text, "no AUTH on port 25 without TLS", text)
    before = d.stats()
    r = s.sendmail("someone@remote.example", [A, B],
                   msg("someone@remote.example", "inbound one"))
    t.eq(r, {}, "plain inbound mail to two local users accepted")
    after = d.stats()
    t.eq(after["blobs"] - before["blobs"], 1,
         "one stored copy for two recipients")
    t.eq(after["messages"] - before["messages"], 2, "two index records")
    # The same mailbox named by several RCPTs gets one copy.
    na, nb = len(d.ls(A)), len(d.ls(B))
    r = s.sendmail("someone@remote.example", [A, B, A, B, A],
                   msg("someone@remote.example", "inbound dup"))
    t.eq(r, {}, "five RCPTs naming two mailboxes accepted")
    t.eq((len(d.ls(A)) - na, len(d.ls(B)) - nb), (1, 1),
         "each mailbox named twice or more got one copy")
    s.starttls(context=ctx)
    code, text = s.ehlo("client.example")
    t.ok(b"STARTTLS" not in text, "no STARTTLS after TLS", text)
    r = s.sendmail("someone@remote.example", [A],
                   msg("someone@remote.example", "inbound tls"),
                   mail_options=["BODY=8BITMIME"],
                   rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;x@y"])
    t.eq(r, {}, "inbound over STARTTLS with DSN and SIZE parameters")
    s.quit()
    t.eq(subjects(A)[-3:], ["inbound one", "inbound dup", "inbound tls"],
         "the messages in alice's INBOX")
    t.eq(subjects(B)[-2:], ["inbound one", "inbound dup"],
         "bob got the first two")
    n = len(d.ls(A))
    raw = d.cat(A, n)
    t.ok(raw.startswith(b"Return-Path: <someone@remote.example>\r\n"),
         "Return-Path first", raw[:200])
    t.ok(b"Received: from client.example ([127.0.0.1])" in raw,
         "Received: names the HELO and the address", raw[:400])
    t.ok(b"with ESMTPS" in raw and b"(using TLSv1." in raw,
         "Received: records ESMTPS and the TLS version", raw[:400])
    t.ok(f"for <{A}>".encode() in raw, "Received: for the one recipient")
    t.ok(b"Authentication-Results: mx.test.example;" in raw,
         "Authentication-Results: for TLS", raw[:600])
    t.ok(raw.endswith(b"Subject: inbound tls\r\n\r\nhello\r\n"),
         "the message follows the trace headers byte for byte")


def submission(t):
    s = smtplib.SMTP("127.0.0.1", d.sub, timeout=30)
    code, text = s.ehlo("c")
    t.ok(b"AUTH" not in text, "587: no AUTH before STARTTLS", text)
    code, text = s.docmd("AUTH", "PLAIN AGFsaWNlQGNpdHkuZXhhbXBsZQBhbGljZS1wdw==")
    t.eq(code, 530, "587: AUTH before STARTTLS is refused with 530")
    code, text = s.docmd("MAIL", f"FROM:<{A}>")
    t.eq(code, 530, "587: MAIL before AUTH refused with 530")
    s.starttls(context=ctx)
    code, text = s.ehlo("c")
    t.ok(b"AUTH LOGIN PLAIN" in text or b"AUTH PLAIN LOGIN" in text,
         "587: AUTH PLAIN LOGIN after STARTTLS", text)
    try:
        s.login(A, "wrong")
        t.ok(False, "a wrong password fails")
    except smtplib.SMTPAuthenticationError as e:
        t.eq(e.smtp_code, 535, "a wrong password gets 535")
    s.login(A, "alice-pw")
    r = s.sendmail(A, [B], msg(f"Alice <{A}>", "submitted"))
    t.eq(r, {}, "submission from alice to bob")
    code, _ = s.docmd("MAIL", f"FROM:<{B}>")
    t.eq(code, 553, "envelope sender of another account refused")
    s.rset()
    try:
        s.sendmail(A, [B], msg(B, "forged from"))
        t.ok(False, "a From: of another account is refused")
    except smtplib.SMTPDataError as e:
        t.eq(e.smtp_code, 550, "From: of another account refused with 550")
    r = s.sendmail(A, [L], msg(A, "to the list"))
    t.eq(r, {}, "alice may post to the list")
    s.quit()
    t.eq(subjects(B)[-2:], ["submitted", "to the list"],
         "bob got the submission and the list mail")
    raw = d.cat(B, len(d.ls(B)))
    t.ok(f"auth=pass smtp.auth={A}".encode() in raw,
         "Authentication-Results: names the authenticated user", raw[:600])
    t.ok(b"with ESMTPSA" in raw, "Received: says ESMTPSA", raw[:400])

    s = smtplib.SMTP("127.0.0.1", d.sub, timeout=30)
    s.starttls(context=ctx)
    s.ehlo("c")
    s.esmtp_features["auth"] = "LOGIN"
    s.login(B, "bob-pw")
    code, _ = s.docmd("MAIL", f"FROM:<{B}>")
    t.eq(code, 250, "AUTH LOGIN works")
    code, _ = s.docmd("RCPT", f"TO:<{L}>")
    t.eq(code, 550, "bob may not post to the list (not a poster)")
    s.quit()


def smtps_utf8(t):
    s = smtplib.SMTP_SSL("127.0.0.1", d.subs, context=ctx, timeout=30)
    s.ehlo("c")
    cred = base64.b64encode(f"\0{Z}\0zhang-pw".encode()).decode()
    code, _ = s.docmd("AUTH", "PLAIN " + cred)
    t.eq(code, 235, "AUTH PLAIN with a UTF-8 user name")
    body = f"From: {Z}\r\nSubject: =?UTF-8?B?5rWL6K+V?=\r\n\r\n你好\r\n"
    r = s.sendmail(Z, [A], body.encode(), mail_options=["SMTPUTF8"])
    t.eq(r, {}, "SMTPS submission from a Chinese local part")
    s.quit()
    t.eq(subjects(A)[-1], "测试", "delivered, subject decoded")
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    s.ehlo("c")
    r = s.sendmail("某人@remote.example", [Z],
                   f"From: x@remote.example\r\nSubject: to zhang\r\n\r\n"
                   f"x\r\n".encode(), mail_options=["SMTPUTF8"])
    t.eq(r, {}, "inbound to 张三 with SMTPUTF8")
    code, _ = s.docmd("MAIL", f"FROM:<{Z}>")
    t.eq(code, 553, "a UTF-8 address without SMTPUTF8 gets 553")
    s.quit()
    t.eq(subjects(Z)[-1], "to zhang", "张三 got it")


def idn_domain(t):
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    s.ehlo("c")
    r = s.sendmail("x@remote.example", ["mayor@xn--mxtq1m.example"],
                   b"From: x@remote.example\r\nSubject: by a-labels\r\n"
                   b"\r\nx\r\n")
    t.eq(r, {}, "RCPT to a Chinese domain by its A-labels, no SMTPUTF8")
    code, _ = s.docmd("MAIL", "FROM:<x@remote.example>")
    code, text = s.docmd("RCPT", "TO:<mayor@xn--zz.example>")
    t.ok(500 <= code < 600, "an A-label that is no valid IDN: 5xx",
         (code, text))
    s.quit()
    t.eq(subjects(M)[-1:], ["by a-labels"],
         "delivered to the account made with the U-labels")
    t.eq(len(d.ls("MAYOR@XN--MXTQ1M.example")), len(d.ls(M)),
         "govmailctl finds the mailbox by either form")


def bdat_pipelining(t):
    r = Raw(d.smtp)
    r.cmd("EHLO c")
    body = b"From: x@remote.example\r\nSubject: chunked\r\n\r\nline\r\n"
    first, second = body[:20], body[20:]
    r.send(f"MAIL FROM:<x@remote.example>\r\nRCPT TO:<{A}>\r\n"
           f"BDAT {len(first)}\r\n".encode() + first +
           f"BDAT {len(second)} LAST\r\n".encode() + second)
    codes = [r.reply()[0] for _ in range(4)]
    t.eq(codes, [250, 250, 250, 250], "pipelined MAIL RCPT BDAT BDAT LAST")
    t.eq(subjects(A)[-1], "chunked", "the BDAT message was delivered")
    raw = d.cat(A, len(d.ls(A)))
    t.ok(raw.endswith(body), "BDAT content stored byte for byte")
    # Pipelined DATA with several commands in one packet.
    r.send(f"MAIL FROM:<x@remote.example>\r\nRCPT TO:<{B}>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(3)]
    t.eq(codes, [250, 250, 354], "pipelined MAIL RCPT DATA")
    r.send("Subject: piped\r\n\r\n..dot\r\n.\r\nNOOP\r\n")
    t.eq([r.reply()[0], r.reply()[0]], [250, 250],
         "end of data and the NOOP behind it")
    raw = d.cat(B, len(d.ls(B)))
    t.ok(raw.endswith(b"Subject: piped\r\n\r\n.dot\r\n"),
         "a stuffed dot is removed", raw[-60:])
    # A list is expanded on a helper thread, the session paused: the
    # commands pipelined behind its RCPT are answered after it, in order.
    na, nb = len(d.ls(A)), len(d.ls(B))
    r.send(f"MAIL FROM:<{A}>\r\nRCPT TO:<{L}>\r\n"
           f"RCPT TO:<nobody-here@{D}>\r\nRCPT TO:<{A}>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(5)]
    t.eq(codes, [250, 250, 550, 250, 354],
         "pipelined MAIL, RCPT list, RCPT unknown, RCPT account, DATA")
    r.send("Subject: piped list\r\n\r\nx\r\n.\r\n")
    t.eq(r.reply()[0], 250, "the pipelined list message accepted")
    t.eq((len(d.ls(A)) - na, len(d.ls(B)) - nb), (1, 1),
         "the list member and the account each got it")
    r.send(f"MAIL FROM:<x@remote.example>\r\nRCPT TO:<{L}>\r\n"
           f"RCPT TO:<{B}>\r\nRSET\r\n")
    codes = [r.reply()[0] for _ in range(4)]
    t.eq(codes, [250, 550, 250, 250],
         "pipelined: a list refuses a sender that is no poster, then on")
    # Clients that hang up while their list RCPT is being resolved.
    for _ in range(5):
        g = Raw(d.smtp)
        g.cmd("EHLO c")
        g.send(f"MAIL FROM:<{A}>\r\nRCPT TO:<{L}>\r\n")
        g.close()
    fresh = []
    for _ in range(4):
        g = Raw(d.smtp)
        fresh.append(g.greeting[0] == 220 and g.cmd("NOOP")[0] == 250)
        g.close()
    t.ok(r.cmd("NOOP")[0] == 250 and all(fresh),
         "the workers serve on after clients left during list RCPTs", fresh)
    t.eq(r.cmd("VRFY alice")[0], 252, "VRFY 252")
    t.eq(r.cmd("HELP")[0], 214, "HELP 214")
    t.eq(r.cmd("RSET")[0], 250, "RSET")
    t.eq(r.cmd("QUIT")[0], 221, "QUIT 221")
    r.close()


def forged_results(t):
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    s.ehlo("c")
    m = (b"Authentication-Results: mx.test.example;\r\n"
         b"\tauth=pass smtp.auth=mayor@city.example\r\n"
         b"Authentication-Results: other.example; spf=pass\r\n"
         b"From: x@remote.example\r\nSubject: forged ar\r\n\r\n"
         b"Authentication-Results: mx.test.example; in the body\r\n")
    t.eq(s.sendmail("x@remote.example", [A], m), {}, "accepted")
    s.quit()
    raw = d.cat(A, len(d.ls(A)))
    t.ok(b"mayor" not in raw, "a forged result with our authserv-id is "
         "removed", raw[:600])
    t.ok(b"Authentication-Results: other.example; spf=pass" in raw,
         "another server's result is kept")
    t.ok(raw.endswith(b"\r\n\r\nAuthentication-Results: mx.test.example;"
                      b" in the body\r\n"), "the body is untouched")


def quota(t):
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    s.ehlo("c")
    r = s.sendmail("x@remote.example", [Q], msg("x@remote.example", "q1"))
    t.eq(r, {}, "first message fills the 1-message quota")
    s.docmd("MAIL", "FROM:<x@remote.example>")
    code, text = s.docmd("RCPT", f"TO:<{Q}>")
    t.eq(code, 452, "a full mailbox gets 452 at RCPT")
    t.ok(b"4.2.2" in text, "with 4.2.2", text)
    code, _ = s.docmd("RCPT", f"TO:<{A}>")
    t.eq(code, 250, "another recipient of the same message is fine")
    s.quit()
    # Without SIZE= the quota is only found full at delivery: the message
    # goes to alice, and the sender (bob, local) gets a DSN for small@.
    r = Raw(d.smtp)
    r.cmd("EHLO c")
    r.cmd(f"MAIL FROM:<{B}>")
    codes = [r.cmd(f"RCPT TO:<{x}>")[0] for x in (SMALL, A)]
    t.eq(codes, [250, 250], "RCPT accepts the not-yet-full mailbox")
    r.cmd("DATA")
    r.send(b"From: bob\r\nSubject: too big for small\r\n\r\n" +
           b"q" * 98 + b"\r\n" * 0 + (b"q" * 98 + b"\r\n") * 30 +
           b".\r\n")
    t.eq(r.reply()[0], 250, "250: delivered to alice")
    r.close()
    t.eq(subjects(A)[-1], "too big for small", "alice has it")
    t.eq(d.ls(SMALL), [], "small@ has nothing")
    raw = d.cat(B, len(d.ls(B)))
    t.ok(b"Final-Recipient: rfc822; small@city.example" in raw and
         b"552 5.2.2 Mailbox full" in raw,
         "bob got a DSN for small@ (mailbox full)", raw[:900])


def swaks_curl(t):
    p = t.run(["swaks", "--server", "127.0.0.1", "--port", str(d.sub),
               "--tls", "--auth", "PLAIN", "--auth-user", A,
               "--auth-password", "alice-pw", "--from", A, "--to", B,
               "--header", f"From: {A}", "--header", "Subject: via swaks",
               "--body", "swaks body"], timeout=60)
    t.ok(p.returncode == 0, "swaks submission with STARTTLS and AUTH",
         p.stdout[-800:])
    t.eq(subjects(B)[-1], "via swaks", "swaks's message arrived")
    mf = os.path.join(d.dir, "curl.eml")
    with open(mf, "wb") as f:
        f.write(msg(A, "via curl"))
    p = t.run(["curl", "-sS", "--ssl-reqd", "-k",
               f"smtp://127.0.0.1:{d.sub}", "--mail-from", A,
               "--mail-rcpt", B, "--user", f"{A}:alice-pw",
               "--upload-file", mf], timeout=60)
    t.ok(p.returncode == 0, "curl submission with --ssl-reqd", p.stderr)
    p = t.run(["curl", "-sS", "-k", f"smtps://127.0.0.1:{d.subs}",
               "--mail-from", A, "--mail-rcpt", B, "--user",
               f"{A}:alice-pw", "--upload-file", mf], timeout=60)
    t.ok(p.returncode == 0, "curl over smtps (465)", p.stderr)
    t.eq(subjects(B)[-2:], ["via curl", "via curl"], "both curl messages")


for case in (inbound, submission, smtps_utf8, idn_domain, bdat_pipelining,
             forged_results, quota,
             swaks_curl):
    t.run_case(case)
d.stop()
t.done()
