#!/usr/bin/env python3
"""test_noticesrv.py - the server side of signed notices, against the real
govmail-smtpd, govmail-ca, govmail-notice, govmailctl and govmail-imapd:

- a notice sent with govmail-notice to a notice list (--notice) reaches
  every member; a citizen fetches it over IMAP and it verifies with
  openssl cms -verify -purpose smimesign, gpgsm --verify and NSS cmsutil;
  the signer's address equals From:; Authentication-Results smime=pass;
- tampered, revoked-signer, wrong-From:, unsigned and citizen-signed posts
  to the list are refused with 550 and the reason;
- Authentication-Results smime=fail (tampered, to a citizen), none on
  unsigned mail, smime=neutral without a trust anchor;
- [smtpd] official_policy tag / refuse / accept for unsigned mail whose
  From: is in an official domain;
- govmailctl notice list / report (table and CSV): delivered, then read
  once the citizen set \\Seen over IMAP.

Skips itself until the programs are built.
"""
import imaplib
import os
import re
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program, free_port, wait_port  # noqa: E402
import test_notice_helpers as nh  # noqa: E402

IMAPD = program("imapd/govmail-imapd")
if not (nh.built() and os.access(program("smtpd/govmail-smtpd"), os.X_OK)
        and os.access(IMAPD, os.X_OK)):
    print("1..0 # SKIP govmail-smtpd, govmail-imapd or govmail-notice "
          "not built")
    sys.exit(0)

from smtpdenv import Smtpd, _as_user, tls_client_ctx  # noqa: E402

D = nh.DOMAIN
t = Suite()
imap_port, imaps_port = free_port(), free_port()
d = Smtpd(t, name="noticesrv",
          extra_smtpd="notice_ca_file = ca/root.crt\n"
                      "notice_crl_file = ca/issuing.crl\n"
                      "official_domains = gov.example\n"
                      "official_policy = tag\n",
          extra="[ca]\ndir = ca\nbase_url = http://127.0.0.1:2080\n"
                "passphrase_file = capass\n"
                "[imapd]\n"
                f"listen_imap = 127.0.0.1:{imap_port}\n"
                f"listen_imaps = 127.0.0.1:{imaps_port}\n"
                "workers = 1\npid_file = imapd.pid\n")
path = lambda name: os.path.join(d.dir, name)  # noqa: E731
with open(path("capass"), "w") as f:
    f.write("noticesrv passphrase\n")
os.chmod(path("capass"), 0o600)
if os.geteuid() == 0:
    t.run(["chown", "nobody:nogroup", path("capass")])


def ca(*args):
    return t.run(_as_user() + [nh.CA, "-c", d.conf] + list(args),
                 timeout=120)


def p12(addr, profile, *extra):
    local = addr.split("@")[0]
    p = ca("issue", "--profile", profile, addr, "--generate", "--p12",
           path(local + ".p12"), *extra)
    t.ok(p.returncode == 0, f"{profile} PKCS#12 for {addr}", p.stderr)
    pw = re.search(r"^password (\S+)$", p.stdout, re.M)
    serial = re.search(r"^serial (\S+)$", p.stdout + p.stderr, re.M)
    with open(path(local + ".pass"), "w") as f:
        f.write((pw.group(1) if pw else "") + "\n")
    return serial.group(1) if serial else None


official, revoked = f"water@{D}", f"old@{D}"
citizen_poster = f"cit@{D}"
citizens = [f"c{i}@{D}" for i in range(1, 4)]
members = citizens + [citizen_poster]     # class:citizen
LIST = f"all-citizens@{D}"
d.ctl("domain", "add", D)
for a, n in ((official, "Water Bureau"), (revoked, "Old Bureau")):
    d.ctl("user", "add", a, "--class", "official", "--name", n, "--org", n,
          input="official-pw\n")
for c in citizens + [citizen_poster]:
    d.user(c, "citizen-pw")
p = ca("init")
t.ok(p.returncode == 0, "govmail-ca init", p.stderr)
p12(official, "official")
old_serial = p12(revoked, "official")
p12(citizen_poster, "citizen", "--unverified")
with open(path("smtp.pass"), "w") as f:
    f.write("official-pw\n")
with open(path("cit.smtp"), "w") as f:
    f.write("citizen-pw\n")
d.ctl("list", "add", LIST, "--notice")
d.ctl("list", "member", "add", LIST, f"class:citizen@{D}")
for a in (official, revoked, citizen_poster):
    d.ctl("list", "poster", "add", LIST, a)
root = path("ca/root.crt")
t.ok(os.path.exists(path("ca/issuing.crl")), "the CA wrote its CRL")
d.start()

with open(path("notice.txt"), "w", encoding="utf-8") as f:
    f.write("各位市民：\n明日上午停水，请提前储水。\n")


def send(sender, to, subject, smtp_pass="smtp.pass"):
    local = sender.split("@")[0]
    return t.run([nh.NOTICE, "send", "--from", sender, "--to", to,
                  "--subject", subject, "--body", path("notice.txt"),
                  "--p12", path(local + ".p12"), "--p12-pass-file",
                  path(local + ".pass"), "--server", f"localhost:{d.sub}",
                  "--tls", "starttls", "--cafile", path("cert.pem"),
                  "--user", sender, "--password-file", path(smtp_pass)],
                 timeout=60)


def submit(user, password, rcpts, raw):
    """Authenticated submission; (code, text) of the final reply."""
    s = smtplib.SMTP("127.0.0.1", d.sub, timeout=30)
    try:
        s.starttls(context=tls_client_ctx())
        s.login(user, password)
        s.sendmail(user, rcpts, raw)
        return (250, "")
    except smtplib.SMTPDataError as e:
        return (e.smtp_code, e.smtp_error.decode(errors="replace"))
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return (code, text.decode(errors="replace"))
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def inbound(sender, rcpt, raw):
    """Unauthenticated mail on port 25; (code, text)."""
    s = smtplib.SMTP("127.0.0.1", d.smtp, timeout=30)
    try:
        s.sendmail(sender, [rcpt], raw)
        return (250, "")
    except smtplib.SMTPDataError as e:
        return (e.smtp_code, e.smtp_error.decode(errors="replace"))
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def last(addr):
    lines = d.ls(addr)
    if not lines:
        return b""
    return d.cat(addr, lines[-1].split("\t")[0])


def header(raw, name):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    head = re.sub(r"\r\n[ \t]+", " ", head)
    return [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
            if ln.lower().startswith(name.lower() + ":")]


def strip_trace(raw):
    """The message as submitted: without our Return-Path/Received/A-R."""
    head, body = raw.split(b"\r\n\r\n", 1)
    out, skip = [], False
    for ln in head.split(b"\r\n"):
        if ln[:1] in (b" ", b"\t"):
            if not skip:
                out.append(ln)
            continue
        name = ln.split(b":", 1)[0].lower()
        skip = name in (b"return-path", b"received",
                        b"authentication-results")
        if not skip:
            out.append(ln)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


# ---- a valid notice --------------------------------------------------------
before = {c: len(d.ls(c)) for c in members + [official]}
p = send(official, LIST, "停水通知")
t.ok(p.returncode == 0, "an official's signed notice to the notice list "
     "is accepted", p.stderr + d.logtext()[-1500:])
t.eq({c: len(d.ls(c)) - before[c] for c in members + [official]},
     {**{c: 1 for c in members}, official: 0},
     "every citizen (and only the members) got the notice")
stored = last(citizens[0])
ar = header(stored, "Authentication-Results")
t.ok(any(a.startswith("mx.test.example;") and "smime=pass" in a and
         f"header.smime-identifier={official}" in a for a in ar),
     "Authentication-Results: smime=pass header.smime-identifier=From",
     repr(ar))
mid = (header(stored, "Message-ID") or [""])[0]
t.ok(mid.startswith("<"), "the notice has a Message-ID", mid)

# The citizen fetches it over IMAP.
logf = open(path("imapd.log"), "ab")
imapd = t.spawn(_as_user() + [IMAPD, "-c", d.conf, "-f"], stdout=logf,
                stderr=logf, cwd=d.dir)
logf.close()
t.ok(wait_port(imaps_port), "govmail-imapd on the same store")
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls_client_ctx(),
                      timeout=30)
m.login(citizens[1], "citizen-pw")
m.select("INBOX")
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
typ, data = m.uid("FETCH", uids[-1], "(BODY.PEEK[])")
fetched = data[0][1] if typ == "OK" else b""
t.ok(fetched.startswith(b"Return-Path:"), "IMAP FETCH BODY[] of the notice")
content = nh.verify_signed(t, fetched, root, d.dir, "imap")
t.ok(content is not None, "openssl cms -verify -purpose smimesign")
signer_pem = path("signer.pem")
p = t.run(["openssl", "cms", "-verify", "-in", path("imap.eml"), "-CAfile",
           root, "-purpose", "smimesign", "-signer", signer_pem, "-out",
           os.devnull])
p = t.run(["openssl", "x509", "-in", signer_pem, "-noout", "-ext",
           "subjectAltName"])
frm = header(fetched, "From")
t.ok(f"email:{official}" in p.stdout and frm and official in frm[0],
     "the signer's address equals From:", p.stdout + repr(frm))

sc, sig = nh.split_signed(fetched)
with open(path("content"), "wb") as f:
    f.write(sc)
with open(path("smime.p7s"), "wb") as f:
    f.write(sig)
gh = path("gnupg")
os.makedirs(gh, 0o700, exist_ok=True)
genv = {"GNUPGHOME": gh}
with open(os.path.join(gh, "gpgsm.conf"), "w") as f:
    f.write("disable-crl-checks\ndisable-dirmngr\n")
try:
    t.run(["gpgsm", "--batch", "--import", root], env=genv)
    fpr = t.run(["openssl", "x509", "-in", root, "-noout", "-fingerprint",
                 "-sha1"]).stdout.strip().split("=", 1)[1]
    with open(os.path.join(gh, "trustlist.txt"), "w") as f:
        f.write(f"{fpr} S\n")
    p = t.run(["gpgsm", "--batch", "--disable-crl-checks", "--verify",
               path("smime.p7s"), path("content")], env=genv)
    t.ok(p.returncode == 0 and "Good signature" in p.stderr,
         "gpgsm --verify: Good signature", p.stderr)
finally:
    t.run(["gpgconf", "--kill", "all"], env=genv)
db = "sql:" + path("nssdb")
os.makedirs(path("nssdb"), exist_ok=True)
t.run(["certutil", "-N", "-d", db, "--empty-password"])
t.run(["certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i", root])
p = t.run(["cmsutil", "-D", "-i", path("smime.p7s"), "-c", path("content"),
           "-d", db, "-h", "2", "-n"])
t.ok("signer0.status=GoodSignature" in p.stdout,
     "cmsutil: signer0.status=GoodSignature", p.stdout + p.stderr)

# ---- the report ------------------------------------------------------------
p = d.ctl("notice", "list")
t.ok(mid in p.stdout and LIST in p.stdout and official in p.stdout,
     "govmailctl notice list names the notice, list and poster", p.stdout)
p = d.ctl("notice", "report", mid)
rows = {ln.split("\t")[0]: ln.split("\t") for ln in p.stdout.splitlines()
        if ln.split("\t")[0] in members}
t.eq({c: (r[1], r[4]) for c, r in rows.items()},
     {c: ("delivered", "no") for c in members},
     "report: every citizen delivered, none read yet")
t.ok("recipients 4 delivered 4 deferred 0 failed 0 read 0" in p.stdout,
     "report summary before reading", p.stdout)
typ, _ = m.uid("STORE", uids[-1], "+FLAGS", "(\\Seen)")
t.eq(typ, "OK", "the citizen sets \\Seen over IMAP")
m.logout()
p = d.ctl("notice", "report", mid, "--csv")
csv = p.stdout.splitlines()
t.eq(csv[0], "recipient,status,mailbox_id,uid,read", "CSV header")
t.eq(sorted((ln.split(",")[0], ln.split(",")[1], ln.split(",")[4])
            for ln in csv[1:]),
     sorted((c, "delivered", "yes" if c == citizens[1] else "no")
            for c in members), "CSV: c2 read, the others not")
p = d.ctl("notice", "report", "<nope@x>", check=False)
t.ok(p.returncode != 0, "report of an unknown notice fails")

# ---- refused posts ---------------------------------------------------------
orig = strip_trace(stored)
# tampered: a byte of the signed part changed
i = orig.index(b"Content-Transfer-Encoding", orig.index(b"\r\n\r\n"))
j = orig.index(b"\r\n\r\n", i) + 4
tampered = orig[:j] + (b"A" if orig[j:j + 1] != b"A" else b"B") + \
    orig[j + 1:]
code, text = submit(official, "official-pw", [LIST], tampered)
t.ok(code == 550 and "invalid signature" in text,
     "tampered notice: 550 invalid signature", f"{code} {text}")
# unsigned
unsigned = (f"From: {official}\r\nTo: {LIST}\r\nSubject: plain\r\n"
            "Message-ID: <plain@x>\r\n\r\nno signature\r\n").encode()
code, text = submit(official, "official-pw", [LIST], unsigned)
t.ok(code == 550 and "unsigned" in text, "unsigned notice: 550 unsigned",
     f"{code} {text}")
# wrong From: the water bureau's signature under the old bureau's From:
wrong = orig.replace(f"From: {official}".encode(),
                     f"From: {revoked}".encode(), 1)
t.ok(wrong != orig, "built a wrong-From: copy")
code, text = submit(revoked, "official-pw", [LIST], wrong)
t.ok(code == 550 and "wrong From:" in text, "wrong From: 550 wrong From:",
     f"{code} {text}")
# citizen-signed
p = send(citizen_poster, LIST, "not official", smtp_pass="cit.smtp")
t.ok(p.returncode != 0 and "not signed with an official certificate"
     in p.stderr, "citizen-signed notice: 550 not official", p.stderr)
# revoked signer (the CRL is re-read when it changes)
p = send(revoked, LIST, "before revocation")
t.ok(p.returncode == 0, "the old bureau may post before revocation",
     p.stderr)
p = ca("revoke", old_serial or "?", "--reason", "keyCompromise")
t.ok(p.returncode == 0, "govmail-ca revoke the old bureau", p.stderr)
p = send(revoked, LIST, "after revocation")
t.ok(p.returncode != 0 and "invalid signature" in p.stderr and "revoked"
     in p.stderr, "revoked signer: 550 invalid signature (revoked)",
     p.stderr)

# ---- Authentication-Results on inbound mail --------------------------------
n0 = len(d.ls(citizens[2]))
code, text = inbound(official, citizens[2], tampered)
t.ok(code == 250, "tampered mail to a citizen is accepted", text)
got = last(citizens[2])
t.ok(len(d.ls(citizens[2])) == n0 + 1 and any(
    "smime=fail" in a for a in header(got, "Authentication-Results")),
    "tampered mail: smime=fail", repr(header(got,
                                             "Authentication-Results")))
t.ok(len(header(got, "X-Govmail-Warning")) == 1 and
     header(got, "Subject")[0].startswith("[UNVERIFIED SENDER] "),
     "a subdomain of an official domain (city.gov.example under "
     "gov.example) with a failed signature is tagged", got[:800])
code, text = inbound("someone@elsewhere.example", citizens[2],
                     b"From: someone@elsewhere.example\r\nSubject: hi\r\n"
                     b"\r\nplain\r\n")
got = last(citizens[2])
t.ok(code == 250 and not any("smime=" in a for a in
                             header(got, "Authentication-Results")),
     "unsigned mail gets no smime= result", got[:600])
t.eq(header(got, "Subject"), ["hi"], "mail from other domains untagged")

# ---- official-domain policy ------------------------------------------------
fake = (b"From: Mayor <mayor@gov.example>\r\nSubject: Pay now\r\n"
        b"\r\nsend money\r\n")


def set_conf(key, value, **more):
    """Change [smtpd] keys and restart the daemon once."""
    d.stop()
    with open(d.conf) as f:
        text = f.read()
    for k, v in [(key, value)] + list(more.items()):
        text = re.sub(rf"^{k} = .*$", f"{k} = {v}", text, flags=re.M)
    with open(d.conf, "w") as f:
        f.write(text)
    d.start()


code, text = inbound("mayor@gov.example", citizens[2], fake)
got = last(citizens[2])
t.ok(code == 250 and header(got, "Subject") == ["[UNVERIFIED SENDER] Pay "
                                                "now"],
     "policy tag: subject prefixed", got[:600])
t.ok(len(header(got, "X-Govmail-Warning")) == 1, "policy tag: warning line")
code, text = inbound("x@elsewhere.example", citizens[2],
                     b"From: x@elsewhere.example\r\nFrom: Mayor "
                     b"<mayor@GOV.example>\r\nSubject: Two\r\n\r\nx\r\n")
got = last(citizens[2])
t.ok(code == 250 and header(got, "Subject") == ["[UNVERIFIED SENDER] Two"],
     "policy tag: a repeated From: naming an official domain is tagged",
     got[:600])
code, text = inbound("mayor@gov.example", citizens[2],
                     b"From: mayor@gov.example\r\nTo: x@y\r\n\r\nno subject"
                     b"\r\n")
got = last(citizens[2])
t.ok(code == 250 and header(got, "Subject") == ["[UNVERIFIED SENDER]"],
     "policy tag: a message without Subject: gets one", got[:600])
folded = (b"From: mayor@gov.example\r\nSubject: first\r\n\tsecond\r\n"
          b"X-Keep: me\r\n\r\nbody\r\n")
code, text = inbound("mayor@gov.example", citizens[2], folded)
got = last(citizens[2])
t.ok(code == 250 and b"Subject: [UNVERIFIED SENDER] first\r\n\tsecond\r\n"
     b"X-Keep: me\r\n\r\nbody\r\n" in got,
     "policy tag: a folded Subject: keeps its bytes after the prefix",
     got[-300:])
set_conf("official_policy", "refuse")
code, text = inbound("mayor@gov.example", citizens[2], fake)
t.ok(code == 550 and "official domain" in text, "policy refuse: 550",
     f"{code} {text}")
set_conf("official_policy", "accept")
code, text = inbound("mayor@gov.example", citizens[2], fake)
got = last(citizens[2])
t.ok(code == 250 and header(got, "Subject") == ["Pay now"] and not
     header(got, "X-Govmail-Warning"), "policy accept: unchanged",
     got[:600])

set_conf("official_domains", "gov.example:refuse")
code, text = inbound("mayor@gov.example", citizens[2], fake)
t.ok(code == 550 and "official domain" in text,
     "a domain's own policy (gov.example:refuse) beats official_policy",
     f"{code} {text}")

# ---- no trust anchor -------------------------------------------------------
set_conf("official_domains", "elsewhere.example", notice_ca_file="")
code, text = inbound(official, citizens[2], orig)
got = last(citizens[2])
t.ok(code == 250 and any("smime=neutral" in a for a in
                         header(got, "Authentication-Results")),
     "no trust anchor: smime=neutral", repr(header(got,
                                                   "Authentication-Results")))
code, text = submit(official, "official-pw", [LIST], orig)
t.ok(code == 550 and "no trust anchor" in text,
     "no trust anchor: notice lists refuse posts", f"{code} {text}")

t.stop(imapd)
d.stop()

# ---- a bad policy stops the daemon at start-up ------------------------------
for key, bad in (("official_policy", "reject"),
                 ("official_domains", "gov.example:drop")):
    with open(d.conf) as f:
        good = f.read()
    with open(d.conf, "w") as f:
        f.write(re.sub(rf"^{key} = .*$", f"{key} = {bad}", good,
                       flags=re.M))
    try:
        p = t.run(_as_user() + [program("smtpd/govmail-smtpd"), "-c",
                                d.conf, "-f"], timeout=30)
        t.ok(p.returncode == 78 and key in p.stderr,
             f"{key} = {bad}: exit 78 naming the key", p.stderr)
    except subprocess.TimeoutExpired:
        t.ok(False, f"{key} = {bad}: the daemon started anyway")
    with open(d.conf, "w") as f:
        f.write(good)
t.done()
