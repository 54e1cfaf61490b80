#!/usr/bin/env python3
"""test_ca_more.py - govmail-ca beyond the daily path: the offline-root
split (init-root, init-issuing, sign-issuing, import-issuing), the TLS
server profile, renew, OCSP over GET, a wrong passphrase, and --generate
with an RSA key.
"""
import base64
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program, free_port, wait_port  # noqa: E402
from ctlenv import Ctl, RESIDENT_ID_OK  # noqa: E402

CA = program("ca/govmail-ca")
DOMAIN = "split.gov.example"

t = Suite()
if not (os.access(CA, os.X_OK) and os.access(program("tools/govmailctl"),
                                             os.X_OK)):
    print("1..0 # SKIP govmail-ca or govmailctl not built")
    sys.exit(0)

port = free_port()
base = f"http://127.0.0.1:{port}"
ctl = Ctl(t, extra=("[ca]\n"
                    "dir = ca\n"
                    f"base_url = {base}\n"
                    f"listen = 127.0.0.1:{port}\n"
                    "passphrase_file = pass\n"
                    "crl_days = 2\n"))
work = ctl.dir
with open(os.path.join(work, "pass"), "w") as f:
    f.write("issuing passphrase\n")
with open(os.path.join(work, "rootpass"), "w") as f:
    f.write("offline root passphrase\n")


def path(name):
    return os.path.join(work, name)


def ca(*args):
    return t.run([CA, "-c", ctl.conf] + list(args))


def sh(*argv):
    return t.run(list(argv))


# ---- the offline root ----------------------------------------------------
rootdir = path("offline-root")
p = ca("-d", rootdir, "--passphrase-file", path("rootpass"), "init-root")
t.ok(p.returncode == 0, "init-root", p.stderr)
t.ok(not os.path.exists(os.path.join(rootdir, "issuing.key")),
     "init-root makes only the root")
p = ca("init-issuing", "--issuing-key", "p384", "--csr", path("issuing.csr"))
t.ok(p.returncode == 0 and os.path.exists(path("issuing.csr")),
     "init-issuing writes a request", p.stderr)
p = ca("-d", rootdir, "--passphrase-file", path("pass"), "sign-issuing",
       "--csr", path("issuing.csr"), "--cert", path("issuing.crt"))
t.ok(p.returncode != 0, "sign-issuing with the wrong root passphrase fails")
p = ca("-d", rootdir, "--passphrase-file", path("rootpass"), "sign-issuing",
       "--csr", path("issuing.csr"), "--cert", path("issuing.crt"))
t.ok(p.returncode == 0, "sign-issuing on the root's machine", p.stderr)
txt = sh("openssl", "x509", "-in", path("issuing.crt"), "-noout",
         "-text").stdout
t.ok("pathlen:0" in txt and "E-mail Protection" in txt and
     "NIST CURVE: P-384" in txt, "issuing CA: P-384, pathlen 0, "
     "emailProtection")
p = ca("import-issuing", "--cert", path("issuing.crt"), "--root",
       os.path.join(rootdir, "root.crt"))
t.ok(p.returncode == 0, "import-issuing", p.stderr)
cadir = path("ca")
t.ok(not os.path.exists(os.path.join(cadir, "root.key")),
     "the root key stays offline")

ctl.must("domain", "add", DOMAIN)
ctl.ok(ctl.user(f"c@{DOMAIN}", "citizen", "--name", "Chen Jie"),
       "user add citizen")
p = ca("issue", "--profile", "citizen", f"c@{DOMAIN}", "--unverified",
       "--generate", "--key-type", "rsa3072", "--p12", path("c.p12"))
t.ok(p.returncode == 0, "issue --generate --key-type rsa3072", p.stderr)
pw = re.search(r"^password (\S+)$", p.stdout, re.M)
serial = re.search(r"^serial ([0-9a-f]+)$", p.stdout, re.M)
pem = sh("openssl", "pkcs12", "-in", path("c.p12"), "-passin",
         "pass:" + (pw.group(1) if pw else ""), "-nokeys", "-clcerts").stdout
with open(path("c.pem"), "w") as f:
    f.write(pem)
txt = sh("openssl", "x509", "-in", path("c.pem"), "-noout", "-text").stdout
t.ok("ecdsa-with-SHA384" in txt, "a P-384 issuing CA signs with SHA-384")
t.ok("Public-Key: (3072 bit)" in txt and
     "Digital Signature, Key Encipherment" in txt,
     "RSA 3072 key with keyEncipherment")
v = sh("openssl", "verify", "-purpose", "smimesign", "-CAfile",
       os.path.join(rootdir, "root.crt"), "-untrusted",
       os.path.join(cadir, "issuing.crt"), path("c.pem"))
t.ok(v.returncode == 0, "verifies to the offline root", v.stdout + v.stderr)

# ---- renew -------------------------------------------------------------
p = ca("renew", serial.group(1) if serial else "x", "--generate", "--p12",
       path("c2.p12"))
t.ok(p.returncode == 0 and "renewing" in p.stdout, "renew", p.stderr)
p = ca("find", "--email", f"c@{DOMAIN}")
t.eq(len(p.stdout.splitlines()), 2, "two certificates after renew")
lst = ca("list").stdout
t.eq(len(re.findall(r"^[0-9a-f]{32} good citizen \S+ \S+ c@", lst, re.M)), 2,
     "list: serial, status, profile, dates, address")
p = ca("renew", "00112233", "--generate")
t.ok(p.returncode == 1 and "no certificate" in p.stderr,
     "renew of an unknown serial refused")

# ---- issue-batch: one disk flush for many ------------------------------------
ctl.ok(ctl.user(f"b1@{DOMAIN}", "citizen", "--name", "Bai Yu"), "user b1")
ctl.ok(ctl.user(f"b2@{DOMAIN}", "citizen", "--name", "Bai Er"), "user b2")
sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
   "ec_paramgen_curve:P-256", "-out", path("b2.key"))
sh("openssl", "req", "-new", "-key", path("b2.key"), "-subj", "/CN=x",
   "-out", path("b2.csr"))
lines = (f"citizen b1@{DOMAIN} generate {path('b1.p12')} unverified\n"
         f"# a comment\n"
         f"citizen nobody@{DOMAIN} generate {path('n.p12')} unverified\n"
         f"citizen b2@{DOMAIN} {path('b2.csr')} {path('b2.pem')} "
         "unverified\n"
         "official b2@x too many fields here\n")
p = t.run([CA, "-c", ctl.conf, "issue-batch"], input=lines)
t.ok(p.returncode == 1 and "2 issued, 2 failed" in p.stderr,
     "issue-batch: good lines issued, bad lines reported", p.stderr)
t.ok("line 3: no such mailbox" in p.stderr and "line 5:" in p.stderr,
     "issue-batch names the failing lines", p.stderr)
m = re.search(rf"^b1@{DOMAIN} ([0-9a-f]{{32}}) \S+ (\S+)$", p.stdout, re.M)
t.ok(m is not None and os.path.exists(path("b1.p12")),
     "issue-batch --generate: serial, file and password", p.stdout)
if m:
    r = sh("openssl", "pkcs12", "-in", path("b1.p12"), "-passin",
           "pass:" + m.group(2), "-noout")
    t.ok(r.returncode == 0, "the batch PKCS#12 opens with its password")
v = sh("openssl", "verify", "-purpose", "smimesign", "-CAfile",
       os.path.join(rootdir, "root.crt"), "-untrusted",
       os.path.join(cadir, "issuing.crt"), path("b2.pem"))
t.ok(v.returncode == 0, "issue-batch from a CSR verifies", v.stdout + v.stderr)
t.ok(not os.path.exists(path("n.p12")), "nothing written for a bad line")
p = ca("audit", "verify")
t.ok(p.returncode == 0, "audit intact after a batch", p.stdout)

# ---- an internationalized domain (RFC 5280 7.5, RFC 8398) -----------------
# The store keeps the domain by its U-labels; the certificate names it by
# its A-labels, in rfc822Name for an ASCII local part and in
# SmtpUTF8Mailbox for a Chinese one; either spelling finds the holder.
IDN, IDN_A = "政务.example", "xn--zfr164b.example"
ctl.must("domain", "add", IDN)
ctl.ok(ctl.user(f"li@{IDN}", "citizen", "--name", "Li Na"), "user li@IDN")
ctl.ok(ctl.user(f"张伟@{IDN_A}", "citizen", "--name", "张伟", "--verified",
                "--resident-id", RESIDENT_ID_OK),
       "user 张伟@IDN (added by the A-label spelling), identity verified")
sans = {}
for who, spelled in (("li", f"li@{IDN_A}"), ("zw", f"张伟@{IDN}"),
                     ("zw2", f"张伟@{IDN_A}")):
    p = ca("issue", "--profile", "citizen", spelled,
           *(["--unverified"] if who == "li" else []),
           "--generate", "--p12", path(who + ".p12"))
    t.ok(p.returncode == 0, f"issue for {spelled}", p.stderr)
    pw = re.search(r"^password (\S+)$", p.stdout, re.M)
    pem = sh("openssl", "pkcs12", "-in", path(who + ".p12"), "-passin",
             "pass:" + (pw.group(1) if pw else ""), "-nokeys",
             "-clcerts").stdout
    with open(path(who + ".pem"), "w") as f:
        f.write(pem)
    sans[who] = sh("openssl", "x509", "-in", path(who + ".pem"), "-noout",
                   "-ext", "subjectAltName", "-subject", "-nameopt",
                   "utf8").stdout
t.ok(f"email:li@{IDN_A}" in sans["li"], "ASCII local part: rfc822Name "
     "with the A-label domain", sans["li"])
t.ok(f"SmtpUTF8Mailbox::张伟@{IDN_A}" in sans["zw"] and
     "SmtpUTF8Mailbox" in sans["zw2"], "Chinese local part: "
     "SmtpUTF8Mailbox with the A-label domain", sans["zw"])
sn = [re.search(r"serialNumber\s*=\s*(\w+)", sans[w]) for w in ("zw", "zw2")]
t.ok(all(sn) and sn[0].group(1) == sn[1].group(1),
     "one holder ID whichever spelling was used", sans)
for spelled in (f"张伟@{IDN}", f"张伟@{IDN_A.upper()}"):
    lines = ca("find", "--email", spelled).stdout.splitlines()
    t.ok(len(lines) == 2 and all(x.endswith(f"张伟@{IDN}") for x in lines),
         f"find --email {spelled}: both certificates", lines)
v = sh("openssl", "verify", "-purpose", "smimesign", "-CAfile",
       os.path.join(rootdir, "root.crt"), "-untrusted",
       os.path.join(cadir, "issuing.crt"), path("zw.pem"))
t.ok(v.returncode == 0, "the IDN certificate verifies", v.stdout + v.stderr)
p = ca("issue", "--profile", "citizen", "x@bad..example", "--unverified",
       "--generate")
t.ok(p.returncode != 0, "a malformed domain is refused", p.stderr)

# ---- wrong passphrase: clear error, nothing changes ------------------------
with open(path("badpass"), "w") as f:
    f.write("nope\n")
before = ca("list").stdout
p = ca("--passphrase-file", path("badpass"), "issue", "--profile",
       "citizen", f"c@{DOMAIN}", "--unverified", "--generate")
t.ok(p.returncode == 3 and "passphrase" in p.stderr,
     "wrong passphrase: exit 3, says so", p.stderr)
t.eq(ca("list").stdout, before, "wrong passphrase: nothing issued")

# ---- TLS server profile (needs the TLS CA, i.e. a full init) --------------
p = ca("issue-server", "--dns", "localhost", "--key-out", path("s.key"),
       "--cert-out", path("s.crt"))
t.ok(p.returncode == 1 and "TLS" in p.stderr,
     "an imported issuing CA has no TLS CA: clear error", p.stderr)
full = path("full")
p = ca("-d", full, "init")
t.ok(p.returncode == 0, "init a full CA", p.stderr)
p = ca("-d", full, "issue-server", "--dns", "localhost", "--dns",
       "mail.example", "--ip", "127.0.0.1", "--key-out", path("s.key"),
       "--cert-out", path("s.crt"))
t.ok(p.returncode == 0, "issue-server", p.stderr)
t.eq(os.stat(path("s.key")).st_mode & 0o777, 0o600, "server key 0600")
txt = sh("openssl", "x509", "-in", path("s.crt"), "-noout", "-text").stdout
t.ok("DNS:localhost, DNS:mail.example, IP Address:127.0.0.1" in txt and
     "TLS Web Server Authentication" in txt, "serverAuth with DNS and IP")
v = sh("openssl", "verify", "-purpose", "sslserver", "-CAfile",
       os.path.join(full, "root.crt"), "-untrusted", path("s.crt"),
       path("s.crt"))
t.ok(v.returncode == 0, "verify -purpose sslserver", v.stdout + v.stderr)
p = ca("-d", full, "issue-server", "--dns", "bad name", "--key-out",
       path("x.key"), "--cert-out", path("x.crt"))
t.ok(p.returncode == 1 and not os.path.exists(path("x.crt")),
     "a bad DNS name is refused")

# ---- OCSP over GET, CRL days ------------------------------------------------
srv = t.spawn([CA, "-c", ctl.conf, "serve"], stderr=subprocess.DEVNULL)
t.ok(wait_port(port), "serve listens")
r = sh("openssl", "ocsp", "-issuer", os.path.join(cadir, "issuing.crt"),
       "-cert", path("c.pem"), "-reqout", path("req.der"), "-no_nonce")
with open(path("req.der"), "rb") as f:
    req = f.read()
url = base + "/ocsp/" + base64.b64encode(req).decode()
with urllib.request.urlopen(url, timeout=10) as resp:
    body = resp.read()
    ctype = resp.headers.get("Content-Type")
with open(path("resp.der"), "wb") as f:
    f.write(body)
r = sh("openssl", "ocsp", "-respin", path("resp.der"), "-issuer",
       os.path.join(cadir, "issuing.crt"), "-cert", path("c.pem"),
       "-CAfile", os.path.join(rootdir, "root.crt"))
t.ok(ctype == "application/ocsp-response" and ": good" in r.stdout,
     "OCSP GET (RFC 6960 A.1) answers good", r.stdout + r.stderr)
try:
    urllib.request.urlopen(base + "/ocsp/" + "A" * 20000, timeout=10)
    code = 200
except urllib.error.HTTPError as e:
    code = e.code
t.ok(code in (400, 413, 414), f"an oversized GET is refused ({code})")
with urllib.request.urlopen(base + "/crl/issuing.crl", timeout=10) as resp:
    crl = resp.read()
with open(path("crl.der"), "wb") as f:
    f.write(crl)
d = sh("openssl", "crl", "-inform", "DER", "-in", path("crl.der"), "-noout",
       "-lastupdate", "-nextupdate").stdout
m1 = re.search(r"lastUpdate=(\w+ +\d+)", d)
m2 = re.search(r"nextUpdate=(\w+ +\d+)", d)
t.ok(m1 and m2 and m1.group(1) != m2.group(1), "CRL nextUpdate set "
     "from crl_days", d)
t.stop(srv)
# ---- concurrent revocations: the CRL ends up with all of them --------------
good = re.findall(r"^([0-9a-f]{32}) good ", ca("list").stdout, re.M)
procs = [subprocess.Popen([CA, "-c", ctl.conf, "revoke", s_, "--reason",
                           "cessationOfOperation"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
         for s_ in good]
codes = [pr.wait(timeout=60) for pr in procs]
t.ok(len(good) >= 3 and codes == [0] * len(good),
     f"{len(good)} revocations at once", codes)
crl = sh("openssl", "crl", "-inform", "DER", "-in",
         os.path.join(cadir, "issuing.crl"), "-noout", "-text").stdout
t.ok(all(re.sub(r"^0+", "", s_).upper() in crl.replace(":", "").upper()
         for s_ in good), "the CRL lists every concurrent revocation")
p = ca("audit", "verify")
t.ok(p.returncode == 0, "audit verify after the split", p.stdout)
t.done()
