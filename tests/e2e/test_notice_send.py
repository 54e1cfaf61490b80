#!/usr/bin/env python3
"""test_notice_send.py - govmail-notice send: a Chinese notice with an HTML
alternative and an attachment, signed with an official's PKCS#12 from
govmail-ca, submitted with STARTTLS + AUTH PLAIN to a Python SMTP server
(tests/e2e/test_notice_helpers.py); what arrives verifies with openssl cms
-verify -purpose smimesign, gpgsm and NSS cmsutil.  A server certificate
from another CA, a wrong password and a recipient the server refuses all
fail cleanly.

Skips itself until govmail-ca, govmailctl and govmail-notice are built.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
import test_notice_helpers as nh  # noqa: E402

if not nh.built():
    print("1..0 # SKIP govmail-ca, govmailctl or govmail-notice not built")
    sys.exit(0)

t = Suite()
pki = nh.Pki(t)
official, (off_p12, off_pw) = pki.official()
citizen = f"zhang@{nh.DOMAIN}"
path = pki.path
with open(path("smtp.pass"), "w") as f:
    f.write("s3cret-submission\n")
srv = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official,
                  "s3cret-submission", refuse={f"nobody@{nh.DOMAIN}"})

SUBJECT = "关于调整居民用水价格的通知"
BODY = ("各位市民：\n\n自2027年1月1日起，居民用水价格调整为每立方米3.50元。\n"
        ".一行以点开头\n特此通知。\n")
with open(path("body.txt"), "w", encoding="utf-8") as f:
    f.write(BODY)
with open(path("body.html"), "w", encoding="utf-8") as f:
    f.write("<p>各位市民：</p><p>居民用水价格调整。</p>\n")
attach = path("价格表.pdf")
with open(attach, "wb") as f:
    f.write(b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")


def send(*extra, to=(citizen,), server=None, cafile=None):
    argv = [nh.NOTICE, "send", "--from", f"水务局 <{official}>",
            "--p12", off_p12, "--p12-pass-file", off_pw,
            "--subject", SUBJECT, "--body", path("body.txt"),
            "--server", server or f"localhost:{srv.port}",
            "--cafile", cafile or pki.root,
            "--user", official, "--password-file", path("smtp.pass")]
    for a in to:
        argv += ["--to", a]
    return t.run(argv + list(extra), timeout=60)


p = send("--html", path("body.html"), "--attach", attach,
         to=(f"张伟 <{citizen}>", f"li@{nh.DOMAIN}"))
t.eq(p.returncode, 0, "send: exit 0")
t.ok(p.returncode == 0, "send: stderr is quiet", p.stderr)
t.eq(len(srv.messages), 1, "the server received one message")
if srv.messages:
    mail_from, rcpts, raw, mid = srv.messages[0]
    t.eq(mail_from, official, "envelope sender is the official")
    t.eq(rcpts, [citizen, f"li@{nh.DOMAIN}"], "both envelope recipients")
    t.ok(b"\n" not in raw.replace(b"\r\n", b""), "CRLF throughout")
    t.ok(all(len(line) <= 998 for line in raw.split(b"\r\n")),
         "no line over 998 characters")
    t.ok(mid is not None, "Message-ID present")
    hdr = nh.parse(raw)
    t.eq(str(hdr["Subject"]), SUBJECT, "RFC 2047 subject decodes")
    t.ok("水务局" in str(hdr["From"]), "display name decodes",
         str(hdr["From"]))
    t.ok(b"=?utf-8?" in raw.split(b"\r\n\r\n")[0].lower() or
         b"=?UTF-8?" in raw.split(b"\r\n\r\n")[0],
         "headers are 7-bit encoded words")
    t.ok(b"micalg=sha-256" in raw or b"micalg=\"sha-256\"" in raw,
         "micalg matches the P-256 key's digest")
    content = nh.verify_signed(t, raw, pki.root, pki.dir, "sent")
    t.ok(content is not None, "openssl cms -verify -purpose smimesign")
    if content is not None:
        txt = nh.text_of(content)
        t.ok("3.50元" in txt and ".一行以点开头" in txt,
             "the text survives signing and dot-stuffing", txt)
        ent = nh.parse(content)
        t.eq(ent.get_content_type(), "multipart/mixed",
             "attachments: multipart/mixed")
        kinds = [x.get_content_type() for x in ent.walk()]
        t.ok("multipart/alternative" in kinds and "text/html" in kinds,
             "text + HTML as multipart/alternative", kinds)
        atts = [x for x in ent.walk() if x.get_content_disposition() ==
                "attachment"]
        t.ok(len(atts) == 1 and atts[0].get_filename() == "价格表.pdf"
             and atts[0].get_content() == open(attach, "rb").read(),
             "the attachment arrives byte for byte with its name")

    sig_content, sig = nh.split_signed(raw)
    with open(path("content"), "wb") as f:
        f.write(sig_content)
    with open(path("smime.p7s"), "wb") as f:
        f.write(sig)
    # The signature carries the signer and the issuing CA, not the
    # self-signed root (every verifier must trust it already).
    pr = t.run(["openssl", "pkcs7", "-inform", "DER", "-in",
                path("smime.p7s"), "-print_certs", "-noout"])
    subj = [ln for ln in pr.stdout.splitlines() if ln.startswith("subject")]
    iss = [ln for ln in pr.stdout.splitlines() if ln.startswith("issuer")]
    t.ok(len(subj) == 2, "the signature carries two certificates",
         pr.stdout + pr.stderr)
    t.ok(all(s_[len("subject"):] != i_[len("issuer"):]
             for s_, i_ in zip(subj, iss)) and
         any("Issuing" in x for x in subj),
         "signer + issuing CA, no self-signed root", pr.stdout)
    gh = path("gnupg")
    os.mkdir(gh, 0o700)
    genv = {"GNUPGHOME": gh}
    with open(os.path.join(gh, "gpgsm.conf"), "w") as f:
        f.write("disable-crl-checks\ndisable-dirmngr\n")
    try:
        t.run(["gpgsm", "--batch", "--import", pki.root], env=genv)
        fpr = t.run(["openssl", "x509", "-in", pki.root, "-noout",
                     "-fingerprint", "-sha1"]).stdout.strip().split("=")[1]
        with open(os.path.join(gh, "trustlist.txt"), "w") as f:
            f.write(f"{fpr} S\n")
        g = t.run(["gpgsm", "--batch", "--disable-crl-checks", "--verify",
                   path("smime.p7s"), path("content")], env=genv)
        t.ok(g.returncode == 0 and "Good signature" in g.stderr,
             "gpgsm --verify: Good signature", g.stderr)
    finally:
        t.run(["gpgconf", "--kill", "all"], env=genv)
    db = "sql:" + path("nssdb")
    os.mkdir(path("nssdb"))
    t.run(["certutil", "-N", "-d", db, "--empty-password"])
    t.run(["certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i",
           pki.root])
    c = t.run(["cmsutil", "-D", "-i", path("smime.p7s"), "-c",
               path("content"), "-d", db, "-h", "2", "-n"])
    t.ok("signer0.status=GoodSignature" in c.stdout,
         "cmsutil: signer0.status=GoodSignature", c.stdout + c.stderr)

# base64 inner part, written to a file without a server
p = t.run([nh.NOTICE, "send", "--from", official, "--to", citizen,
           "--p12", off_p12, "--p12-pass-file", off_pw, "--subject",
           "Plain ASCII", "--body", path("body.txt"), "--cte", "base64",
           "--output", path("b64.eml")])
t.eq(p.returncode, 0, "send --output without --server writes the file")
raw = open(path("b64.eml"), "rb").read() if p.returncode == 0 else b""
t.ok(b"Content-Transfer-Encoding: base64" in raw and
     nh.verify_signed(t, raw, pki.root, pki.dir, "b64") is not None,
     "--cte base64: inner part base64, verifies")

# ---- failures ------------------------------------------------------------
before_auth = srv.auth_attempts
other = nh.Pki(t, name="other")
p = send(cafile=other.root)
t.ok(p.returncode == 1 and "TLS" in p.stderr and
     len(p.stderr.splitlines()) == 1,
     "a server certificate from another CA: exit 1, one line", p.stderr)
t.eq(srv.auth_attempts, before_auth, "... and no password was sent")
p = pki.ca("issue-server", "--dns", "mail.example", "--key-out",
           path("other.key"), "--cert-out", path("other.crt"))
t.ok(p.returncode == 0, "a server certificate for another name", p.stderr)
srv_other = nh.FakeSMTP(path("other.crt"), path("other.key"), official,
                        "s3cret-submission")
p = send(server=f"localhost:{srv_other.port}")
t.ok(p.returncode == 1 and "hostname mismatch" in p.stderr,
     "right CA, wrong name (localhost vs mail.example): refused", p.stderr)
p = send(server=f"127.0.0.1:{srv_other.port}")
t.ok(p.returncode == 1 and "IP address mismatch" in p.stderr,
     "right CA, wrong IP address: refused", p.stderr)
t.eq((srv_other.auth_attempts, len(srv_other.messages)), (0, 0),
     "... no password and no message reached that server")
srv_other.stop()
p = send(server=f"127.0.0.1:{srv.port}")
t.eq(p.returncode, 0, "by IP address: the certificate's IP SAN matches")
with open(path("smtp.pass"), "w") as f:
    f.write("wrong\n")
p = send()
t.ok(p.returncode == 1 and "authentication failed" in p.stderr,
     "wrong password: authentication failed", p.stderr)
with open(path("smtp.pass"), "w") as f:
    f.write("s3cret-submission\n")
p = send(to=(f"nobody@{nh.DOMAIN}",))
t.ok(p.returncode == 1 and "550" in p.stderr,
     "a refused recipient: exit 1 with the server's 550", p.stderr)
t.eq(len(srv.messages), 2, "nothing more was accepted")
p = send("--tls", "none", server="192.0.2.1:587")
t.ok(p.returncode == 1 and "loopback only" in p.stderr,
     "--tls none with a password: refused unless on loopback", p.stderr)
p = t.run([nh.NOTICE, "send", "--from", "no address", "--to", citizen,
           "--p12", off_p12, "--subject", "x", "--body", path("body.txt")])
t.ok(p.returncode == 1 and p.stderr.startswith("govmail-notice: "),
     "bad --from: clear error", p.stderr)
srv.stop()
t.done()
