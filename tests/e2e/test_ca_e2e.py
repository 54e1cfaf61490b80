#!/usr/bin/env python3
"""test_ca_e2e.py - govmail-ca end to end: init, the four profiles from CSRs
and --generate/PKCS#12 (checked with openssl and NSS pk12util), hostile
input that must issue nothing, revoke, and serve (CA certificates, CRL,
OCSP, /certs/), then audit verify and its tamper detection.

Accounts come from the real store through govmailctl; every program runs
for real on loopback, on a free port.
"""
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, program, free_port, wait_port  # noqa: E402
from ctlenv import Ctl, USCC_OK, RESIDENT_ID_OK, RESIDENT_ID_OK2  # noqa: E402,E501

CA = program("ca/govmail-ca")
DOMAIN = "city.gov.example"

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
                    "passphrase_file = pass\n"))
work = ctl.dir
cadir = os.path.join(work, "ca")
with open(os.path.join(work, "pass"), "w") as f:
    f.write("correct horse battery\n")
os.chmod(os.path.join(work, "pass"), 0o600)


def ca(*args, input=None):
    return t.run([CA, "-c", ctl.conf] + list(args), input=input)


def sh(*argv, input=None):
    return t.run(list(argv), input=input)


def path(name):
    return os.path.join(work, name)


def csr(name, *keyargs):
    """A key and CSR with a hostile subject the CA must ignore."""
    key, req = path(name + ".key"), path(name + ".csr")
    if not keyargs:
        keyargs = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    p = sh("openssl", "genpkey", *keyargs, "-out", key)
    assert p.returncode == 0, p.stderr
    p = sh("openssl", "req", "-new", "-key", key, "-subj",
           "/CN=Mallory/emailAddress=root@evil.example", "-out", req)
    assert p.returncode == 0, p.stderr
    return req


def x509_text(pem):
    return sh("openssl", "x509", "-in", pem, "-noout", "-text").stdout


def count_certs():
    p = ca("list")
    return len([ln for ln in p.stdout.splitlines() if ln.strip()])


def audit_len():
    with open(os.path.join(cadir, "audit.log")) as f:
        return len(f.readlines())


def get(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- store and CA ------------------------------------------------------
ctl.must("domain", "add", DOMAIN)
accounts = {
    "official": (f"li.ming@{DOMAIN}", ["--name", "Li Ming", "--org",
                                       "Housing Bureau", "--title",
                                       "Director"]),
    "department": (f"housing@{DOMAIN}", ["--name", "Housing Bureau",
                                         "--org", "Housing Bureau"]),
    "legal-person": (f"acme@{DOMAIN}", ["--name", "ACME", "--org",
                                        "ACME Trading Co", "--org-id",
                                        USCC_OK]),
    "citizen": (f"zhang@{DOMAIN}", ["--name", "Zhang Wei", "--resident-id",
                                    RESIDENT_ID_OK, "--verified"]),
}
for cls, (addr, opts) in accounts.items():
    p = ctl.user(addr, cls, *opts)
    ctl.ok(p, f"user add {cls}")
p = ctl.user(f"mv@{DOMAIN}", "citizen", "--name", "Mv Person")
ctl.ok(p, "user add unverified citizen")

p = ca("init")
t.ok(p.returncode == 0, "init", p.stderr)
for f in ("root.key", "issuing.key", "ocsp.key"):
    st = os.stat(os.path.join(cadir, f))
    t.eq(st.st_mode & 0o777, 0o600, f"{f} is mode 0600")
    with open(os.path.join(cadir, f)) as fh:
        t.ok("BEGIN ENCRYPTED PRIVATE KEY" in fh.read(),
             f"{f} is encrypted PKCS#8")
root_txt = x509_text(os.path.join(cadir, "root.crt"))
t.ok("NIST CURVE: P-384" in root_txt and "pathlen:1" in root_txt,
     "root: P-384, pathlen 1")
p = ca("init")
t.ok(p.returncode != 0 and "already" in p.stderr, "second init refused")
root = os.path.join(cadir, "root.crt")
issuing = os.path.join(cadir, "issuing.crt")

# ---- the four profiles from CSRs ----------------------------------------
policies = {"official": "2.23.140.1.5.3.3", "department": "2.23.140.1.5.2.3",
            "legal-person": "2.23.140.1.5.2.3",
            "citizen": "2.23.140.1.5.4.3"}
serials = {}
for cls, (addr, _) in accounts.items():
    req = csr(cls)
    out = path(cls + ".pem")
    p = ca("issue", "--profile", cls, addr, "--csr", req, "--out", out)
    if not t.ok(p.returncode == 0, f"issue {cls} from CSR", p.stderr):
        continue
    m = re.search(r"serial ([0-9a-f]{32})", p.stdout + p.stderr)
    t.ok(m is not None, f"{cls}: 16-byte serial printed")
    serials[cls] = m.group(1) if m else ""
    v = sh("openssl", "verify", "-purpose", "smimesign", "-CAfile", root,
           "-untrusted", issuing, out)
    t.ok(v.returncode == 0, f"{cls}: openssl verify -purpose smimesign",
         v.stdout + v.stderr)
    txt = x509_text(out)
    t.ok(re.search(r"Extended Key Usage: *\n *E-mail Protection\n", txt),
         f"{cls}: EKU emailProtection only")
    t.ok(re.search(r"Key Usage: critical\n *Digital Signature, "
                   r"Key Agreement\n", txt), f"{cls}: KU critical")
    t.ok(f"Policy: {policies[cls]}" in txt, f"{cls}: policy OID")
    t.ok(f"email:{addr}" in txt, f"{cls}: SAN rfc822Name")
    t.ok(f"URI:{base}/crl/issuing.crl" in txt, f"{cls}: CDP")
    t.ok(f"CA Issuers - URI:{base}/ca/issuing.crt" in txt and
         f"OCSP - URI:{base}/ocsp" in txt, f"{cls}: AIA")
    t.ok("Mallory" not in txt and "evil" not in txt,
         f"{cls}: the CSR's subject is ignored")
    d = sh("openssl", "x509", "-in", out, "-noout", "-startdate",
           "-enddate").stdout
    t.ok(re.search(r"notBefore=\w+ +\d+ [\d:]+ (\d+)", d) and
         int(re.search(r"notAfter=\w+ +\d+ [\d:]+ (\d+)", d).group(1)) -
         int(re.search(r"notBefore=\w+ +\d+ [\d:]+ (\d+)", d).group(1)) in
         (1, 2), f"{cls}: about 730 days")

p = ctl.run("user", "show", f"acme@{DOMAIN}")
t.ok(f"certificate: {serials.get('legal-person')}" in p.stdout,
     "the serial is recorded on the account", p.stdout)
txt = x509_text(path("legal-person.pem"))
t.ok(f"organizationIdentifier = NTRCN-{USCC_OK}" in txt,
     "legal person: NTRCN-<USCC>")
txt = x509_text(path("official.pem"))
t.ok("organizationIdentifier = GOVCN" in txt and "title = Director" in txt,
     "official: GOVCN and title")
t.ok("SN = Li" in txt and "GN = Ming" in txt,
     "official: surname first (pinyin order)")
t.ok("serialNumber" in x509_text(path("citizen.pem")),
     "citizen: an opaque serialNumber")
derb = subprocess.run(["openssl", "x509", "-in", path("citizen.pem"),
                       "-outform", "DER"], capture_output=True).stdout
t.ok(RESIDENT_ID_OK.encode() not in derb, "ID number not in DER bytes")

p = ca("issue", "--profile", "citizen", f"mv@{DOMAIN}", "--csr",
       csr("mv"), "--out", path("mv-refused.pem"))
t.ok(p.returncode == 1 and "--unverified" in p.stderr,
     "unverified citizen needs --unverified")
p = ca("issue", "--profile", "citizen", f"mv@{DOMAIN}", "--unverified",
       "--csr", csr("mv"), "--out", path("mv.pem"))
t.ok(p.returncode == 0 and "Policy: 2.23.140.1.5.1.3" in
     x509_text(path("mv.pem")), "--unverified: mailbox-validated")

# ---- --generate and PKCS#12 ------------------------------------------------
p12 = path("dept.p12")
p = ca("issue", "--profile", "department", f"housing@{DOMAIN}", "--generate",
       "--p12", p12)
t.ok(p.returncode == 0, "issue --generate", p.stderr)
m = re.search(r"^password (\S+)$", p.stdout, re.M)
t.ok(m is not None, "password printed once")
pw = m.group(1) if m else ""
t.eq(os.stat(p12).st_mode & 0o777, 0o600, "PKCS#12 is mode 0600")
info = sh("openssl", "pkcs12", "-info", "-in", p12, "-passin", "pass:" + pw,
          "-noout", "-nokeys")
t.ok(info.returncode == 0 and "AES-256-CBC" in info.stderr and
     "MAC: sha256" in info.stderr, "openssl pkcs12 -info: AES-256, SHA-256 MAC",
     info.stderr)
bad = sh("openssl", "pkcs12", "-in", p12, "-passin", "pass:wrong", "-noout")
t.ok(bad.returncode != 0, "wrong PKCS#12 password refused")
nss = path("nss")
os.makedirs(nss)
if shutil.which("pk12util"):
    sh("certutil", "-N", "-d", "sql:" + nss, "--empty-password")
    imp = sh("pk12util", "-i", p12, "-d", "sql:" + nss, "-W", pw)
    t.ok(imp.returncode == 0, "pk12util imports the PKCS#12",
         imp.stdout + imp.stderr)
    lst = sh("certutil", "-L", "-d", "sql:" + nss)
    t.ok(f"housing@{DOMAIN}" in lst.stdout and "u,u,u" in lst.stdout,
         "NSS holds the certificate with its key")

p = ca("issue", "--profile", "citizen", f"zhang@{DOMAIN}", "--resident-id",
       RESIDENT_ID_OK, "--csr", csr("rid"), "--out", path("rid.pem"))
t.ok(p.returncode == 0, "--resident-id of the account's own ID: issued",
     p.stderr)
m = re.search(r"serial ([0-9a-f]{32})", p.stdout + p.stderr)
rid_serial = m.group(1) if m else "x"
derb = subprocess.run(["openssl", "x509", "-in", path("rid.pem"),
                       "-outform", "DER"], capture_output=True).stdout
t.ok(len(derb) > 0 and RESIDENT_ID_OK.encode() not in derb,
     "the checked ID number is not in the certificate")

# ---- hostile input: clear errors, nothing issued -----------------------------
before, lines = count_certs(), audit_len()
cases = [
    ("unknown mailbox", ["issue", "--profile", "citizen",
                         f"nobody@{DOMAIN}", "--unverified", "--csr",
                         csr("h1")], "no such mailbox"),
    ("wrong class", ["issue", "--profile", "official", f"zhang@{DOMAIN}",
                     "--csr", csr("h2")], "citizen mailbox"),
    ("RSA 1024", ["issue", "--profile", "citizen", f"zhang@{DOMAIN}",
                  "--csr", csr("h3", "-algorithm", "RSA", "-pkeyopt",
                               "rsa_keygen_bits:1024")], "2048"),
    ("unknown curve", ["issue", "--profile", "citizen", f"zhang@{DOMAIN}",
                       "--csr", csr("h4", "-algorithm", "EC", "-pkeyopt",
                                    "ec_paramgen_curve:secp256k1")],
     "curve"),
]
with open(csr("h5"), "rb") as f:
    good = f.read()
with open(path("trunc.csr"), "wb") as f:
    f.write(good[:len(good) // 2])
cases.append(("another person's ID number",
              ["issue", "--profile", "citizen", f"zhang@{DOMAIN}",
               "--resident-id", RESIDENT_ID_OK2, "--csr", csr("h6")],
              "not the account's"))
cases.append(("truncated CSR", ["issue", "--profile", "citizen",
                                f"zhang@{DOMAIN}", "--csr",
                                path("trunc.csr")], "PKCS#10"))
for name, args, why in cases:
    p = ca(*args)
    t.ok(p.returncode == 1 and why in p.stderr and
         len(p.stderr.splitlines()) == 1, f"{name}: clear error",
         p.stderr)
t.eq(count_certs(), before, "hostile input: nothing in the cert DB")
t.eq(audit_len(), lines, "hostile input: nothing in the audit log")

# ---- serve: repository, OCSP, CRL -----------------------------------------
srv = t.spawn([CA, "-c", ctl.conf, "serve"], stderr=subprocess.DEVNULL)
t.ok(wait_port(port), "serve listens")
st, body = get(base + "/ca/root.crt")
with open(root) as f:
    rootpem = f.read()
dr = subprocess.run(["openssl", "x509", "-inform", "DER", "-outform", "PEM"],
                    input=body, capture_output=True).stdout.decode()
t.ok(st == 200 and dr.strip() == rootpem.strip(), "GET /ca/root.crt (DER)")
st, _ = get(base + "/ca/issuing.crt")
t.eq(st, 200, "GET /ca/issuing.crt")
st, body = get(base + f"/certs/acme@{DOMAIN}.pem")
t.ok(st == 200 and b"BEGIN CERTIFICATE" in body, "GET /certs/<addr>.pem")
st2, der = get(base + f"/certs/acme@{DOMAIN}")
pd = subprocess.run(["openssl", "x509", "-outform", "DER"], input=body,
                    capture_output=True)
t.ok(st2 == 200 and pd.returncode == 0 and pd.stdout == der,
     "the PEM and the DER of /certs/ are the same certificate")
st, _ = get(base + f"/certs/nobody@{DOMAIN}")
t.eq(st, 404, "/certs/ of an unknown address: 404")
st, _ = get(base + "/etc/passwd")
t.eq(st, 404, "unknown path: 404")
OCSP_MAX = 8192   # GOVCA_OCSP_REQUEST_MAX
for n, want in ((OCSP_MAX - 1, 200), (OCSP_MAX, 200), (OCSP_MAX + 1, 413)):
    st, _ = get(base + "/ocsp", data=b"\x30" * n,
                headers={"Content-Type": "application/ocsp-request"})
    t.eq(st, want, f"OCSP POST of {n} bytes: {want}")
PATH_MAX = 2048   # GOVCA_HTTP_PATH_MAX
for n, want in ((PATH_MAX, 404), (PATH_MAX + 1, 414)):
    st, _ = get(base + "/x" + "a" * (n - 2))
    t.eq(st, want, f"a {n}-byte path: {want}")
st, body = get(base + "/ocsp", data=b"junk",
               headers={"Content-Type": "application/ocsp-request"})
with open(path("junk.resp"), "wb") as f:
    f.write(body)
r = sh("openssl", "ocsp", "-respin", path("junk.resp"), "-resp_text",
       "-noverify")
t.ok(st == 200 and "malformedrequest" in (r.stdout + r.stderr).lower(),
     "junk OCSP request: malformedRequest", r.stdout + r.stderr)


def ocsp(cert):
    return sh("openssl", "ocsp", "-issuer", issuing, "-cert", cert, "-url",
              base + "/ocsp", "-CAfile", root, "-resp_text")


cz = path("citizen.pem")
o = ocsp(cz)
t.ok(f"{cz}: good" in o.stdout and "Response verify OK" in o.stderr,
     "OCSP: good, signed by the delegated responder", o.stdout + o.stderr)
t.ok("OCSP Nonce" in o.stdout, "OCSP: nonce echoed")

p = ca("revoke", serials.get("citizen", "x"), "--reason", "keyCompromise")
t.ok(p.returncode == 0, "revoke", p.stderr)
p = ctl.run("user", "show", f"zhang@{DOMAIN}")
t.ok(f"certificate: {rid_serial}" in p.stdout,
     "revoking an older certificate keeps the account's current one",
     p.stdout)
p = ca("revoke", rid_serial, "--reason", "superseded")
t.ok(p.returncode == 0, "revoke the current one", p.stderr)
p = ctl.run("user", "show", f"zhang@{DOMAIN}")
t.ok("certificate: none" in p.stdout,
     "revoke clears the account's current certificate", p.stdout)
p = ca("revoke", serials.get("citizen", "x"), "--reason", "keyCompromise")
t.ok(p.returncode == 1 and "already revoked" in p.stderr,
     "revoking twice is refused")
o = ocsp(cz)
t.ok(f"{cz}: revoked" in o.stdout and "keyCompromise" in o.stdout,
     "OCSP after revoke: revoked (keyCompromise)", o.stdout + o.stderr)
st, crl = get(base + "/crl/issuing.crl")
with open(path("crl.der"), "wb") as f:
    f.write(crl)
sh("openssl", "crl", "-inform", "DER", "-in", path("crl.der"), "-out",
   path("crl.pem"))
with open(path("chain.pem"), "w") as f:
    for fn in (root, issuing):
        with open(fn) as g:
            f.write(g.read())
v = sh("openssl", "verify", "-crl_check", "-CAfile", path("chain.pem"),
       "-CRLfile", path("crl.pem"), cz)
t.ok(v.returncode != 0 and "revoked" in (v.stdout + v.stderr),
     "verify -crl_check with the served CRL fails", v.stdout + v.stderr)
v = sh("openssl", "verify", "-crl_check", "-CAfile", path("chain.pem"),
       "-CRLfile", path("crl.pem"), path("legal-person.pem"))
t.ok(v.returncode == 0, "an unrevoked certificate still verifies with it",
     v.stdout + v.stderr)
nu = sh("openssl", "crl", "-in", path("crl.pem"), "-noout", "-lastupdate",
        "-nextupdate").stdout
t.ok("nextUpdate=" in nu, "CRL has a nextUpdate")
t.stop(srv)

p = ca("find", "--email", f"zhang@{DOMAIN}")
t.ok(p.returncode == 0 and "revoked" in p.stdout, "find --email",
     p.stdout + p.stderr)
p = ca("show", serials.get("legal-person", "x"))
t.ok(p.returncode == 0 and "status: good" in p.stdout and
     f"acme@{DOMAIN}" in p.stdout, "show SERIAL", p.stdout + p.stderr)
p = ca("expiring", "--days", "800")
t.ok(p.returncode == 0 and f"acme@{DOMAIN}" in p.stdout and
     f"zhang@{DOMAIN}" not in p.stdout, "expiring --days 800",
     p.stdout + p.stderr)
p = ca("expiring", "--days", "30")
t.ok(p.returncode == 0 and p.stdout.strip() == "", "expiring --days 30")

# ---- audit -------------------------------------------------------------------
p = ca("audit", "verify")
t.ok(p.returncode == 0 and "intact" in p.stdout, "audit verify: intact",
     p.stdout + p.stderr)
log = os.path.join(cadir, "audit.log")
with open(log) as f:
    orig = f.readlines()
t.ok(any(" issue " in ln for ln in orig) and
     any(" revoke " in ln for ln in orig) and
     any(" crl " in ln for ln in orig), "issue, revoke and crl audited")


def tampered(lines_, name, want_pos):
    with open(log, "w") as f:
        f.writelines(lines_)
    p = ca("audit", "verify")
    t.ok(p.returncode == 4 and f"record {want_pos}:" in p.stdout,
         f"audit verify finds {name} at {want_pos}", p.stdout + p.stderr)


alt = list(orig)
alt[2] = alt[2].replace("issue", "issuf", 1) if "issue" in alt[2] else \
    alt[2][:5] + ("x" if alt[2][5] != "x" else "y") + alt[2][6:]
tampered(alt, "an altered byte", 3)
tampered(orig[:3] + orig[4:], "a deleted record", 4)
sw = list(orig)
sw[4], sw[5] = sw[5], sw[4]
tampered(sw, "two swapped records", 5)
with open(log, "w") as f:
    f.writelines(orig)
p = ca("audit", "verify")
t.ok(p.returncode == 0, "restored log verifies again")
t.done()
