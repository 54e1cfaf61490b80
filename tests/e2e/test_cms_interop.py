#!/usr/bin/env python3
"""test_cms_interop.py - S/MIME made by libgovca against the other
implementations: OpenSSL (`openssl cms`/`openssl smime`), GnuPG (`gpgsm`)
and NSS (`cmsutil`, `certutil`, `pk12util`), both ways.

A throwaway PKI is made here with the openssl CLI (`openssl ca`): a P-384
root, a P-256 issuing CA, an official department certificate (P-256, as a
PKCS#12 with AES-256), a citizen certificate (RSA 2048) and a revoked one
with a CRL.  tests/unit/cms_tool drives the library.
"""
import base64
import os
import re
import shutil

from tap import Suite, program

t = Suite()
TOOL = program("tests/unit/cms_tool")
D = t.tmp

EXT = """
[req]
distinguished_name = dn
[dn]
[ca]
default_ca = iss
[iss]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}/newcerts
certificate = {d}/iss.crt
private_key = {d}/iss.key
serial = {d}/serial
crlnumber = {d}/crlnumber
default_md = sha256
default_days = 700
default_crl_days = 7
policy = pol_any
unique_subject = no
[pol_any]
countryName = optional
organizationName = optional
commonName = supplied
[root_ext]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[iss_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ee_ec]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::EMAIL
certificatePolicies = $ENV::POLICY
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ee_rsa]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::EMAIL
certificatePolicies = $ENV::POLICY
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def p(name):
    return os.path.join(D, name)


def ossl(*args, env=None, input=None):
    return t.run(["openssl"] + list(args), env=env, input=input, timeout=60)


def must(proc, what):
    if proc.returncode != 0:
        raise RuntimeError(f"{what}: exit {proc.returncode}: {proc.stderr}")
    return proc


def make_pki():
    cnf = p("ca.cnf")
    with open(cnf, "w") as f:
        f.write(EXT.format(d=D))
    os.mkdir(p("newcerts"))
    open(p("index.txt"), "w").close()
    with open(p("serial"), "w") as f:
        f.write("1000\n")
    with open(p("crlnumber"), "w") as f:
        f.write("01\n")
    env = {"EMAIL": "x", "POLICY": "1.2.3"}
    must(ossl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-384", "-nodes", "-keyout", p("root.key"),
              "-out", p("root.crt"), "-subj", "/C=CN/O=Test City/CN=Test Root",
              "-days", "3650", "-sha384", "-config", cnf,
              "-extensions", "root_ext", env=env), "root")
    must(ossl("req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("iss.key"),
              "-out", p("iss.csr"), "-subj",
              "/C=CN/O=Test City/CN=Test Issuing", "-config", cnf,
              env=env), "issuing csr")
    must(ossl("x509", "-req", "-in", p("iss.csr"), "-CA", p("root.crt"),
              "-CAkey", p("root.key"), "-set_serial", "7", "-sha384",
              "-days", "1000", "-out", p("iss.crt"), "-extfile", cnf,
              "-extensions", "iss_ext", env=env), "issuing")

    def ee(name, keyspec, email, policy, ext):
        e = {"EMAIL": email, "POLICY": policy}
        must(ossl("req", "-new", "-newkey", *keyspec, "-nodes", "-keyout",
                  p(name + ".key"), "-out", p(name + ".csr"), "-subj",
                  f"/C=CN/O=Test City/CN={name}", "-config", cnf, env=e),
             name + " csr")
        must(ossl("ca", "-batch", "-config", cnf, "-in", p(name + ".csr"),
                  "-out", p(name + ".crt"), "-notext", "-extensions", ext,
                  env=e), name)

    ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    ee("dept", ec, "notice@gov.example", "2.23.140.1.5.3.3", "ee_ec")
    ee("citizen", ["rsa:2048"], "zhang.san@city.example",
       "2.23.140.1.5.4.3", "ee_rsa")
    ee("gone", ec, "gone@gov.example", "2.23.140.1.5.3.3", "ee_ec")
    must(ossl("ca", "-batch", "-config", cnf, "-revoke", p("gone.crt"),
              "-crl_reason", "keyCompromise", env=env), "revoke")
    must(ossl("ca", "-batch", "-config", cnf, "-gencrl", "-out",
              p("iss.crl"), env=env), "crl")
    shutil.copy(p("iss.crt"), p("chain.pem"))
    with open(p("cafile.pem"), "w") as f:
        f.write(open(p("root.crt")).read() + open(p("iss.crt")).read())
    must(ossl("pkcs12", "-export", "-inkey", p("dept.key"), "-in",
              p("dept.crt"), "-certfile", p("iss.crt"), "-name", "dept",
              "-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC",
              "-out", p("dept.p12"), "-passout", "pass:p12-secret"), "p12")


def split_signed(raw):
    """(content bytes, signature DER) of a multipart/signed message,
    cut by hand so that the content is byte-exact."""
    m = re.search(rb'boundary="?([^";\r\n]+)"?', raw)
    b = b"--" + m.group(1)
    start = raw.index(b + b"\r\n") + len(b) + 2
    end = raw.index(b"\r\n" + b + b"\r\n", start)
    content = raw[start:end]
    sigpart = raw[end + len(b) + 4:]
    sigpart = sigpart[:sigpart.index(b"\r\n" + b + b"--")]
    body = sigpart.split(b"\r\n\r\n", 1)[1]
    return content, base64.b64decode(body)


def tool(*args, input=None):
    return t.run([TOOL] + list(args), input=input, timeout=60)


def parse_kv(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


make_pki()
with open(p("body.txt"), "w", encoding="utf-8") as f:
    f.write("各位市民：\n本月水费账单已生成。\nFrom the water department.\n")

# ---- sign with libgovca (PKCS#12 identity), base64 and QP ---------------
for cte in ("base64", "qp"):
    extra = ["--qp"] if cte == "qp" else []
    r = tool("sign", "--p12", p("dept.p12"), "--pass", "p12-secret",
             *extra, "--from", "水务局 <notice@gov.example>",
             "--to", "zhang.san@city.example", "--subject", "水费通知",
             p("body.txt"))
    t.eq(r.returncode, 0, f"[{cte}] cms_tool sign exits 0")
    msg = p(f"signed-{cte}.eml")
    with open(msg, "w", newline="") as f:
        f.write(r.stdout)
    raw = open(msg, "rb").read()
    t.ok(b"micalg=sha-256" in raw and b"\n" not in raw.replace(b"\r\n", b""),
         f"[{cte}] micalg=sha-256 and CRLF throughout")

    # OpenSSL, on the whole S/MIME message, with the S/MIME purpose.
    r = ossl("cms", "-verify", "-in", msg, "-CAfile", p("root.crt"),
             "-purpose", "smimesign", "-out", p("ossl.out"))
    t.eq(r.returncode, 0, f"[{cte}] openssl cms -verify -purpose smimesign")
    content, sig = split_signed(raw)
    t.ok(os.path.exists(p("ossl.out")) and
         open(p("ossl.out"), "rb").read() == content,
         f"[{cte}] openssl's verified content is the signed entity")
    r = ossl("smime", "-verify", "-in", msg, "-CAfile", p("root.crt"),
             "-out", os.devnull)
    t.eq(r.returncode, 0, f"[{cte}] openssl smime -verify")
    # The signed attributes openssl sees.
    r = ossl("cms", "-cmsout", "-print", "-noout", "-in", msg)
    for attr in ("signingTime", "S/MIME Capabilities",
                 "id-smime-aa-signingCertificateV2"):
        t.ok(attr in r.stdout, f"[{cte}] signed attribute {attr}")
    with open(p("content"), "wb") as f:
        f.write(content)
    with open(p("smime.p7s"), "wb") as f:
        f.write(sig)

    # Our own verifier.
    r = tool("verify", "--root", p("root.crt"), msg)
    kv = parse_kv(r.stdout)
    t.eq((r.returncode, kv.get("status"), kv.get("class"),
          kv.get("from_match"), kv.get("emails")),
         (0, "pass", "official", "1", "notice@gov.example"),
         f"[{cte}] cms_tool verify: pass, official, From matches SAN")

# ---- GnuPG gpgsm -------------------------------------------------------
gh = p("gnupg")
os.mkdir(gh, 0o700)
genv = {"GNUPGHOME": gh}
with open(os.path.join(gh, "gpgsm.conf"), "w") as f:
    f.write("disable-crl-checks\ndisable-dirmngr\n")
try:
    r = t.run(["gpgsm", "--batch", "--import", p("root.crt")], env=genv)
    t.eq(r.returncode, 0, "gpgsm imports the root")
    fpr = ossl("x509", "-in", p("root.crt"), "-noout", "-fingerprint",
               "-sha1").stdout.strip().split("=", 1)[1]
    with open(os.path.join(gh, "trustlist.txt"), "w") as f:
        f.write(f"{fpr} S\n")
    r = t.run(["gpgsm", "--batch", "--disable-crl-checks", "--verify",
               p("smime.p7s"), p("content")], env=genv)
    t.ok(r.returncode == 0 and "Good signature" in r.stderr,
         "gpgsm --verify: Good signature", r.stderr)
    t.ok("notice@gov.example" in r.stderr, "gpgsm names the signer address",
         r.stderr)
    with open(p("content.bad"), "wb") as f:
        f.write(open(p("content"), "rb").read().replace(b"Content-Type",
                                                        b"Content-type", 1))
    r = t.run(["gpgsm", "--batch", "--disable-crl-checks", "--verify",
               p("smime.p7s"), p("content.bad")], env=genv)
    t.ok(r.returncode != 0 and "Good signature" not in r.stderr,
         "gpgsm rejects a changed content", r.stderr)
finally:
    # gpgsm may have started a gpg-agent for this GNUPGHOME: stop it.
    t.run(["gpgconf", "--kill", "all"], env=genv)

# ---- NSS cmsutil -------------------------------------------------------
db = "sql:" + p("nssdb")
os.mkdir(p("nssdb"))
t.run(["certutil", "-N", "-d", db, "--empty-password"], check=True)
r = t.run(["certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i",
           p("root.crt")])
t.eq(r.returncode, 0, "certutil imports the root")
r = t.run(["cmsutil", "-D", "-i", p("smime.p7s"), "-c", p("content"), "-d",
           db, "-h", "2", "-n"])
t.ok("signer0.status=GoodSignature" in r.stdout,
     "cmsutil: signer0.status=GoodSignature", r.stdout + r.stderr)
r = t.run(["cmsutil", "-D", "-i", p("smime.p7s"), "-c", p("content.bad"),
           "-d", db, "-h", "2", "-n"])
t.ok("signer0.status=GoodSignature" not in r.stdout,
     "cmsutil: a changed content is not a good signature", r.stdout)

# NSS signs (as Thunderbird would); libgovca verifies.
r = t.run(["pk12util", "-i", p("dept.p12"), "-d", db, "-W", "p12-secret"])
t.eq(r.returncode, 0, "pk12util imports libgovca's test PKCS#12")
inner = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
         b"Signed by NSS.\r\n")
with open(p("nss-inner"), "wb") as f:
    f.write(inner)
r = t.run(["cmsutil", "-S", "-T", "-G", "-P", "-N", "dept", "-H", "SHA256",
           "-i", p("nss-inner"), "-o", p("nss.p7s"), "-d", db])
t.eq(r.returncode, 0, "cmsutil -S signs")
if r.returncode == 0:
    sig = base64.encodebytes(open(p("nss.p7s"), "rb").read()).replace(
        b"\n", b"\r\n")
    nssmsg = (b"From: notice@gov.example\r\nTo: a@city.example\r\n"
              b"Subject: from NSS\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/signed; protocol=\"application/"
              b"pkcs7-signature\"; micalg=sha-256; boundary=\"nss\"\r\n\r\n"
              b"--nss\r\n" + inner + b"\r\n--nss\r\n"
              b"Content-Type: application/pkcs7-signature; name=smime.p7s"
              b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + sig +
              b"--nss--\r\n")
    with open(p("nss.eml"), "wb") as f:
        f.write(nssmsg)
    r = tool("verify", "--root", p("root.crt"), p("nss.eml"))
    kv = parse_kv(r.stdout)
    t.eq((kv.get("status"), kv.get("from_match")), ("pass", "1"),
         "libgovca verifies an NSS-signed message")

# ---- OpenSSL signs; libgovca verifies ----------------------------------
with open(p("ossl-inner"), "wb") as f:
    f.write(inner.replace(b"NSS", b"OpenSSL"))
r = ossl("cms", "-sign", "-in", p("ossl-inner"), "-signer", p("dept.crt"),
         "-inkey", p("dept.key"), "-certfile", p("iss.crt"), "-binary",
         "-out", p("ossl.eml"), "-from", "notice@gov.example", "-to",
         "a@city.example", "-subject", "from OpenSSL")
t.eq(r.returncode, 0, "openssl cms -sign")
r = tool("verify", "--root", p("root.crt"), p("ossl.eml"))
t.eq(parse_kv(r.stdout).get("status"), "pass",
     "libgovca verifies an OpenSSL-signed message")
r = ossl("cms", "-sign", "-nodetach", "-in", p("ossl-inner"), "-signer",
         p("dept.crt"), "-inkey", p("dept.key"), "-certfile", p("iss.crt"),
         "-binary", "-out", p("ossl-opaque.eml"), "-from",
         "notice@gov.example")
r = tool("verify", "--root", p("root.crt"), p("ossl-opaque.eml"))
kv = parse_kv(r.stdout)
t.eq((kv.get("status"), kv.get("opaque")), ("pass", "1"),
     "libgovca verifies opaque signed-data from OpenSSL")

# ---- failures ----------------------------------------------------------
raw = open(p("signed-base64.eml"), "rb").read()
bad = raw.replace(b"Content-Transfer-Encoding: base64\r\n\r\n",
                  b"Content-Transfer-Encoding: base64\r\n\r\nAAAA", 1)
with open(p("tampered.eml"), "wb") as f:
    f.write(bad)
r = tool("verify", "--root", p("root.crt"), p("tampered.eml"))
t.eq((r.returncode, parse_kv(r.stdout).get("status")), (1, "fail"),
     "tampered body: cms_tool verify fails")
r = ossl("cms", "-verify", "-in", p("tampered.eml"), "-CAfile",
         p("root.crt"), "-purpose", "smimesign", "-out", os.devnull)
t.ok(r.returncode != 0, "tampered body: openssl cms -verify fails too")

wrong = raw.replace(b"<notice@gov.example>", b"<mayor@gov.example>", 1)
with open(p("wrongfrom.eml"), "wb") as f:
    f.write(wrong)
r = tool("verify", "--root", p("root.crt"), p("wrongfrom.eml"))
kv = parse_kv(r.stdout)
t.eq((kv.get("status"), kv.get("from_match"), kv.get("from")),
     ("pass", "0", "mayor@gov.example"),
     "wrong From: the signature holds but From is flagged")

# Trusting only the issuing CA is not enough either (no root).
r = tool("verify", "--root", p("citizen.crt"), p("signed-base64.eml"))
t.eq((r.returncode, parse_kv(r.stdout).get("status")), (1, "fail"),
     "a root that is not ours: fail")

r = tool("sign", "--cert", p("gone.crt"), "--key", p("gone.key"),
         "--chain", p("chain.pem"), "--from", "gone@gov.example", "--to",
         "a@city.example", p("body.txt"))
with open(p("gone.eml"), "w", newline="") as f:
    f.write(r.stdout)
r = tool("verify", "--root", p("root.crt"), p("gone.eml"))
t.eq(parse_kv(r.stdout).get("status"), "pass",
     "revoked signer without revocation data: pass (PEM identity)")
r = tool("verify", "--root", p("root.crt"), "--crl", p("iss.crl"),
         p("gone.eml"))
kv = parse_kv(r.stdout)
t.eq((kv.get("status"), kv.get("reason")), ("fail", "certificate revoked"),
     "revoked signer with the CRL: fail")
r = tool("verify", "--root", p("root.crt"), "--crl", p("iss.crl"),
         p("signed-base64.eml"))
t.eq(parse_kv(r.stdout).get("status"), "pass",
     "a good signer with the same CRL: pass")
serial = ossl("x509", "-in", p("gone.crt"), "-noout",
              "-serial").stdout.strip().split("=", 1)[1]
r = tool("verify", "--root", p("root.crt"), "--revoked-serial", serial,
         p("gone.eml"))
t.eq(parse_kv(r.stdout).get("reason"), "certificate revoked: keyCompromise",
     "revoked through the callback: fail")

# ---- encrypt (sign, then encrypt) to an RSA and an EC recipient --------
r = tool("encrypt", "--cert", p("citizen.crt"), "--cert", p("dept.crt"),
         p("signed-qp.eml"))
t.eq(r.returncode, 0, "cms_tool encrypt to two recipients")
with open(p("enc.eml"), "w", newline="") as f:
    f.write(r.stdout)
t.ok("smime-type=enveloped-data" in r.stdout and "Subject: " in r.stdout
     and "notice@gov.example" in r.stdout,
     "enveloped-data with the outer headers kept")
for who in ("citizen", "dept"):
    r = ossl("cms", "-decrypt", "-in", p("enc.eml"), "-recip",
             p(who + ".crt"), "-inkey", p(who + ".key"), "-out",
             p(f"dec-{who}.eml"))
    t.eq(r.returncode, 0, f"openssl cms -decrypt ({who})")
    r = ossl("cms", "-verify", "-in", p(f"dec-{who}.eml"), "-CAfile",
             p("root.crt"), "-purpose", "smimesign", "-out", os.devnull)
    t.eq(r.returncode, 0, f"the inner signature verifies ({who})")
r = ossl("cms", "-cmsout", "-print", "-noout", "-in", p("enc.eml"))
t.ok("aes-256-cbc" in r.stdout, "content encrypted with AES-256-CBC")

r = tool("decrypt", "--p12", p("dept.p12"), "--pass", "p12-secret",
         p("enc.eml"))
t.eq(r.returncode, 0, "cms_tool decrypt with the PKCS#12")
with open(p("mydec.eml"), "w", newline="") as f:
    f.write(r.stdout)
r = tool("verify", "--root", p("root.crt"), p("mydec.eml"))
kv = parse_kv(r.stdout)
t.eq((kv.get("status"), kv.get("from_match")), ("pass", "1"),
     "decrypted by libgovca, then verified with From: matching")
r = tool("decrypt", "--cert", p("gone.crt"), "--key", p("gone.key"),
         p("enc.eml"))
t.ok(r.returncode != 0, "a non-recipient cannot decrypt")

# OpenSSL encrypts; libgovca decrypts.
r = ossl("cms", "-encrypt", "-aes256", "-in", p("ossl-inner"), "-out",
         p("ossl-enc.eml"), "-subject", "x", p("citizen.crt"))
r = tool("decrypt", "--cert", p("citizen.crt"), "--key", p("citizen.key"),
         "--entity", p("ossl-enc.eml"))
t.eq(r.stdout.encode(), open(p("ossl-inner"), "rb").read(),
     "libgovca decrypts OpenSSL's EnvelopedData")
r = ossl("cms", "-encrypt", "-aes-256-gcm", "-in", p("ossl-inner"), "-out",
         p("ossl-gcm.eml"), p("dept.crt"))
r = tool("decrypt", "--p12", p("dept.p12"), "--pass", "p12-secret",
         "--entity", p("ossl-gcm.eml"))
t.eq(r.stdout.encode(), open(p("ossl-inner"), "rb").read(),
     "libgovca decrypts AES-256-GCM AuthEnvelopedData to an EC recipient")

t.done()
