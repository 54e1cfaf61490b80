#!/usr/bin/env python3
"""test_cms_govca.py - S/MIME with certificates from the real CA: accounts
made with govmailctl, certificates issued by govmail-ca (--generate, as the
PKCS#12 files departments and citizens receive), messages signed and
encrypted by libgovca (tests/unit/cms_tool), checked by openssl, gpgsm and
NSS cmsutil, and revocation seen both through govmail-ca's database (the
callback the daemons use) and through its CRL.

Skips itself until govmail-ca and govmailctl are built.
"""
import base64
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program  # noqa: E402
from ctlenv import Ctl, RESIDENT_ID_OK  # noqa: E402

CA = program("ca/govmail-ca")
TOOL = program("tests/unit/cms_tool")
DOMAIN = "city.gov.example"

t = Suite()
if not (os.access(CA, os.X_OK) and os.access(program("tools/govmailctl"),
                                             os.X_OK)):
    print("1..0 # SKIP govmail-ca or govmailctl not built")
    sys.exit(0)

ctl = Ctl(t, extra=("[ca]\n"
                    "dir = ca\n"
                    "base_url = http://127.0.0.1:2080\n"
                    "passphrase_file = pass\n"))
work = ctl.dir
cadir = os.path.join(work, "ca")
with open(os.path.join(work, "pass"), "w") as f:
    f.write("cms test passphrase\n")
os.chmod(os.path.join(work, "pass"), 0o600)


def path(name):
    return os.path.join(work, name)


def ca(*args):
    return t.run([CA, "-c", ctl.conf] + list(args))


def tool(*args):
    return t.run([TOOL] + list(args), timeout=60)


def sh(*argv):
    return t.run(list(argv), timeout=60)


def kv(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def split_signed(raw):
    m = re.search(rb'boundary="?([^";\r\n]+)"?', raw)
    b = b"--" + m.group(1)
    start = raw.index(b + b"\r\n") + len(b) + 2
    end = raw.index(b"\r\n" + b + b"\r\n", start)
    sigpart = raw[end + len(b) + 4:]
    sigpart = sigpart[:sigpart.index(b"\r\n" + b + b"--")]
    return raw[start:end], base64.b64decode(sigpart.split(b"\r\n\r\n", 1)[1])


def issue_p12(profile, addr, *extra):
    p12 = path(profile + ".p12")
    p = ca("issue", "--profile", profile, addr, "--generate", "--p12", p12,
           *extra)
    t.ok(p.returncode == 0, f"govmail-ca issue --profile {profile} "
         "--generate", p.stderr)
    pw = re.search(r"^password (\S+)$", p.stdout, re.M)
    serial = re.search(r"serial ([0-9a-f]+)", p.stdout + p.stderr)
    return p12, (pw.group(1) if pw else ""), (serial.group(1) if serial
                                              else "")


# ---- accounts, CA, certificates ---------------------------------------
ctl.must("domain", "add", DOMAIN)
official = f"li.ming@{DOMAIN}"
citizen = f"zhang@{DOMAIN}"
ctl.ok(ctl.user(official, "official", "--name", "Ming Li", "--org",
                "Water Bureau"), "user add official")
ctl.ok(ctl.user(citizen, "citizen", "--name", "Zhang Wei", "--resident-id",
                RESIDENT_ID_OK, "--verified"), "user add citizen")
p = ca("init")
t.ok(p.returncode == 0, "govmail-ca init", p.stderr)
root = os.path.join(cadir, "root.crt")
issuing = os.path.join(cadir, "issuing.crt")
off_p12, off_pw, off_serial = issue_p12("official", official)
cit_p12, cit_pw, _ = issue_p12("citizen", citizen, "--key-type", "rsa2048")
sh("openssl", "pkcs12", "-in", cit_p12, "-passin", "pass:" + cit_pw,
   "-nokeys", "-clcerts", "-out", path("citizen.crt"))
sh("openssl", "pkcs12", "-in", cit_p12, "-passin", "pass:" + cit_pw,
   "-nocerts", "-nodes", "-out", path("citizen.key"))

# ---- sign with the official PKCS#12 -----------------------------------
with open(path("notice.txt"), "w", encoding="utf-8") as f:
    f.write("关于调整居民用水价格的通知\n自下月起执行。\n")
p = tool("sign", "--p12", off_p12, "--pass", off_pw, "--from",
         f"水务局 李明 <{official}>", "--to", citizen, "--subject",
         "关于调整居民用水价格的通知", path("notice.txt"))
t.eq(p.returncode, 0, "cms_tool signs with govmail-ca's PKCS#12")
signed = path("notice.eml")
with open(signed, "w", newline="") as f:
    f.write(p.stdout)

p = sh("openssl", "cms", "-verify", "-in", signed, "-CAfile", root,
       "-purpose", "smimesign", "-out", os.devnull)
t.eq(p.returncode, 0, "openssl cms -verify -purpose smimesign (root only: "
     "the chain travels in the message)")

content, sig = split_signed(open(signed, "rb").read())
with open(path("content"), "wb") as f:
    f.write(content)
with open(path("smime.p7s"), "wb") as f:
    f.write(sig)

gh = path("gnupg")
os.mkdir(gh, 0o700)
genv = {"GNUPGHOME": gh}
with open(os.path.join(gh, "gpgsm.conf"), "w") as f:
    f.write("disable-crl-checks\ndisable-dirmngr\n")
try:
    t.run(["gpgsm", "--batch", "--import", root], env=genv)
    fpr = sh("openssl", "x509", "-in", root, "-noout", "-fingerprint",
             "-sha1").stdout.strip().split("=", 1)[1]
    with open(os.path.join(gh, "trustlist.txt"), "w") as f:
        f.write(f"{fpr} S\n")
    p = t.run(["gpgsm", "--batch", "--disable-crl-checks", "--verify",
               path("smime.p7s"), path("content")], env=genv)
    t.ok(p.returncode == 0 and "Good signature" in p.stderr,
         "gpgsm --verify: Good signature", p.stderr)
finally:
    t.run(["gpgconf", "--kill", "all"], env=genv)

db = "sql:" + path("nssdb")
os.mkdir(path("nssdb"))
sh("certutil", "-N", "-d", db, "--empty-password")
sh("certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i", root)
p = sh("cmsutil", "-D", "-i", path("smime.p7s"), "-c", path("content"),
       "-d", db, "-h", "2", "-n")
t.ok("signer0.status=GoodSignature" in p.stdout,
     "cmsutil: signer0.status=GoodSignature", p.stdout + p.stderr)

p = tool("verify", "--root", root, "--ca-dir", cadir, signed)
r = kv(p.stdout)
t.eq((p.returncode, r.get("status"), r.get("class"), r.get("from_match"),
      r.get("emails")), (0, "pass", "official", "1", official),
     "libgovca verify with the CA database: pass, official, From matches")

t.ok(r.get("auth", "").startswith(
    f"smime=pass header.smime-identifier={official} header.smime-serial="
    f"{off_serial}"), "Authentication-Results text names the signer and "
    "the serial govmail-ca printed", r.get("auth"))

# ---- encrypt to the citizen (RSA), sign-then-encrypt -------------------
p = tool("encrypt", "--cert", path("citizen.crt"), signed)
t.eq(p.returncode, 0, "cms_tool encrypts to the citizen's certificate")
enc = path("bill.eml")
with open(enc, "w", newline="") as f:
    f.write(p.stdout)
p = sh("openssl", "cms", "-decrypt", "-in", enc, "-recip",
       path("citizen.crt"), "-inkey", path("citizen.key"), "-out",
       path("bill-dec.eml"))
t.eq(p.returncode, 0, "openssl cms -decrypt with the citizen's key")
p = sh("openssl", "cms", "-verify", "-in", path("bill-dec.eml"), "-CAfile",
       root, "-purpose", "smimesign", "-out", os.devnull)
t.eq(p.returncode, 0, "the inner signature then verifies")
p = tool("decrypt", "--p12", cit_p12, "--pass", cit_pw, enc)
with open(path("bill-mine.eml"), "w", newline="") as f:
    f.write(p.stdout)
p = tool("verify", "--root", root, "--ca-dir", cadir, path("bill-mine.eml"))
t.eq(kv(p.stdout).get("status"), "pass",
     "decrypted with the citizen's PKCS#12 and verified")

# ---- revocation --------------------------------------------------------
p = ca("revoke", off_serial, "--reason", "keyCompromise")
t.ok(p.returncode == 0, "govmail-ca revoke the official certificate",
     p.stderr)
p = tool("verify", "--root", root, "--ca-dir", cadir, signed)
r = kv(p.stdout)
t.eq((p.returncode, r.get("status")), (1, "fail"),
     "revoked in the CA database: fail")
t.ok("revoked" in r.get("reason", ""), "the reason says revoked",
     p.stdout)
sh("openssl", "crl", "-inform", "DER", "-in",
   os.path.join(cadir, "issuing.crl"), "-out", path("issuing.crl.pem"))
p = tool("verify", "--root", root, "--crl", path("issuing.crl.pem"), signed)
t.eq(kv(p.stdout).get("reason"), "certificate revoked",
     "revoked in govmail-ca's CRL: fail")
p = tool("verify", "--root", root, path("bill-mine.eml"))
t.eq(kv(p.stdout).get("status"), "pass",
     "without revocation data the signature itself still holds")

t.done()
