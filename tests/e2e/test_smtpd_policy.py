#!/usr/bin/env python3
"""govmail-smtpd submission policy: an alias that delivers to the account
may be its envelope sender and From:, another account's alias may not; the
per-account and per-address message rates answer 450 4.7.1 once exceeded
(limits of 3 and 5 per minute here); a department's account (the class in
rate_exempt_classes by default) is held back by neither."""
import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
from smtpdenv import Smtpd, tls_client_ctx  # noqa: E402

t = Suite()
D = "city.example"
A, B = f"alice@{D}", f"bob@{D}"
ALIAS = f"info@{D}"
d = Smtpd(t, extra_smtpd="rate_messages = 3\nrate_ip_messages = 5\n")
d.ctl("domain", "add", D)
d.user(A, "alice-pw")
d.user(B, "bob-pw")
d.ctl("alias", "add", ALIAS, A)
W = f"water@{D}"
d.ctl("user", "add", W, "--class", "department", "--org", "Water Bureau",
      input="water-pw\n")
d.start()
ctx = tls_client_ctx()


def login(user, pw):
    s = smtplib.SMTP_SSL("127.0.0.1", d.subs, context=ctx, timeout=30)
    s.login(user, pw)
    return s


def send(s, frm, hdr_from, subj):
    s.rset()
    code, text = s.docmd("MAIL", f"FROM:<{frm}>")
    if code != 250:
        return code, text
    s.docmd("RCPT", f"TO:<{B}>")
    code, text = s.data(f"From: {hdr_from}\r\nSubject: {subj}\r\n\r\nx\r\n"
                        .encode())
    return code, text


def aliases(t):
    s = login(A, "alice-pw")
    code, _ = send(s, ALIAS, f"Info <{ALIAS}>", "as alias")
    t.eq(code, 250, "alice may send as an alias that delivers to her")
    s.quit()
    s = login(B, "bob-pw")
    code, text = send(s, ALIAS, B, "bob as alias")
    t.eq(code, 553, "bob may not use alice's alias as envelope sender")
    code, text = send(s, B, ALIAS, "bob as alias in From")
    t.eq(code, 550, "nor in From:")
    s.quit()


def rates(t):
    # aliases() used one account message for alice, one for bob; the
    # address count is 2 (bob's refused MAIL did not count).
    s = login(A, "alice-pw")
    codes = [send(s, A, A, f"rate a{i}")[0] for i in range(3)]
    t.eq(codes, [250, 250, 450],
         "alice: 3 messages a minute, the next gets 450")
    _, text = send(s, A, A, "rate again")
    t.ok(b"4.7.1" in text, "with 4.7.1", text)
    s.quit()
    s = login(B, "bob-pw")
    codes = [send(s, B, B, f"rate b{i}")[0] for i in range(3)]
    t.eq(codes, [250, 450, 450],
         "bob: the address's 5 a minute run out first")
    s.quit()
    subj = [ln.split("\t")[3] for ln in d.ls(B)]
    t.eq(sorted(x for x in subj if x.startswith("rate")),
         ["rate a0", "rate a1", "rate b0"], "only the accepted ones arrived")


def exempt(t):
    # After rates() the address's 5 a minute are used up.
    s = login(W, "water-pw")
    codes = [send(s, W, W, f"bill {i}")[0] for i in range(8)]
    t.eq(codes, [250] * 8,
         "a department sends past both limits (rate_exempt_classes)")
    s.quit()
    s = login(B, "bob-pw")
    t.eq(send(s, B, B, "rate b9")[0], 450, "bob, a citizen, still may not")
    s.quit()


for case in (aliases, rates, exempt):
    t.run_case(case)
d.stop()
t.done()
