#!/usr/bin/env python3
"""test_notice_smtpd.py - govmail-notice against the real govmail-smtpd:
an official's notice sent with STARTTLS + AUTH PLAIN on the submission
port and with implicit TLS on 465, one notice to a list, and a small merge
over two pipelined connections; every message is read back from the citizens' INBOXes with
govmailctl and verifies with openssl cms -verify -purpose smimesign.
The server's certificate is checked against its own (self-signed) file.

Skips itself until govmail-smtpd, govmail-ca, govmailctl and
govmail-notice are built.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
import test_notice_helpers as nh  # noqa: E402

nh.skip_unless_smtpd()


D = nh.DOMAIN
t = Suite()
env = nh.OfficialSmtpd(t, "notice-smtpd")
d, path, ca = env.d, env.path, env.ca
official, citizens = env.official, env.citizens
root = path("ca/root.crt")
d.start()

with open(path("notice.txt"), "w", encoding="utf-8") as f:
    f.write("各位市民：\n明日上午停水，请提前储水。\n")


def send(port, tls, to, subject):
    return t.run([nh.NOTICE, "send", "--from", f"水务局 <{official}>",
                  "--to", to, "--subject", subject, "--body",
                  path("notice.txt"), "--p12", path("water.p12"),
                  "--p12-pass-file", path("water.pass"), "--server",
                  f"localhost:{port}", "--tls", tls, "--cafile",
                  path("cert.pem"), "--user", official, "--password-file",
                  path("smtp.pass")], timeout=60)


def inbox(addr):
    return d.ls(addr)


def check_last(addr, what):
    lines = inbox(addr)
    if not t.ok(lines, f"{what}: in {addr}'s INBOX", d.logtext()[-2000:]):
        return None
    uid = lines[-1].split("\t")[0]
    raw = d.cat(addr, uid)
    content = nh.verify_signed(t, raw, root, d.dir, f"v{addr}{uid}")
    t.ok(content is not None, f"{what}: the stored message verifies "
         "(openssl cms -verify -purpose smimesign)")
    return raw


p = send(d.sub, "starttls", citizens[0], "停水通知")
t.eq(p.returncode, 0, "send over submission with STARTTLS + AUTH PLAIN")
if p.returncode != 0:
    t.diag(p.stderr + d.logtext()[-2000:])
raw = check_last(citizens[0], "STARTTLS")
if raw:
    t.eq(str(nh.parse(raw)["Subject"]), "停水通知", "subject intact")

p = send(d.subs, "implicit", citizens[1], "停水通知 465")
t.eq(p.returncode, 0, "send over implicit TLS (465)")
check_last(citizens[1], "implicit TLS")

p = send(d.sub, "starttls", f"nobody@{D}", "x")
t.ok(p.returncode == 1 and p.stderr.startswith("govmail-notice: "),
     "an unknown local recipient: refused by govmail-smtpd", p.stderr)

# ---- one notice to a list ---------------------------------------------------
LIST = f"all-citizens@{D}"
d.ctl("list", "add", LIST)
for c in citizens[2:]:
    d.ctl("list", "member", "add", LIST, c)
d.ctl("list", "poster", "add", LIST, official)
before = {c: len(inbox(c)) for c in citizens}
p = send(d.sub, "starttls", LIST, "致全体市民的停水通知")
t.eq(p.returncode, 0, "send to a notice list")
if p.returncode != 0:
    t.diag(p.stderr)
t.eq({c: len(inbox(c)) - before[c] for c in citizens},
     {citizens[0]: 0, citizens[1]: 0, citizens[2]: 1, citizens[3]: 1},
     "the list's members (and only they) got it")
check_last(citizens[3], "list notice")

# ---- a small merge over two connections ------------------------------------
with open(path("m.csv"), "w", encoding="utf-8") as f:
    f.write("name,email\n" + "".join(f"市民{i},{c}\n" for i, c in
                                     enumerate(citizens, 1)))
with open(path("m.tmpl"), "w", encoding="utf-8") as f:
    f.write(f"From: 水务局 <{official}>\nTo: {{{{name}}}} <{{{{email}}}}>\n"
            "Subject: {{name}} 的水费\n\n{{name}}，您好。\n")
before = {c: len(inbox(c)) for c in citizens}
p = t.run([nh.NOTICE, "merge", "--template", path("m.tmpl"), "--csv",
           path("m.csv"), "--p12", path("water.p12"), "--p12-pass-file",
           path("water.pass"), "--journal", path("m.journal"), "--report",
           path("m.report"), "--connections", "2", "--server",
           f"localhost:{d.sub}", "--cafile", path("cert.pem"), "--user",
           official, "--password-file", path("smtp.pass")], timeout=120)
t.eq(p.returncode, 0, "merge through govmail-smtpd: exit 0")
t.ok("sent=4" in p.stdout, "summary: 4 sent", p.stdout + p.stderr)
t.eq({c: len(inbox(c)) - before[c] for c in citizens},
     {c: 1 for c in citizens}, "one bill in each citizen's INBOX")
for c in citizens[:2]:
    check_last(c, "merged bill")
d.stop()
t.done()
