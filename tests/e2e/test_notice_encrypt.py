#!/usr/bin/env python3
"""test_notice_encrypt.py - govmail-notice merge --encrypt: certificates
fetched from a running `govmail-ca serve` (/certs/<address>), each bill
signed and then encrypted to its citizen; what arrives decrypts with
`openssl cms -decrypt` and the citizen's PKCS#12 key, and the inner
signature then verifies.  A citizen without a certificate is listed in the
report and sent signed only (--missing-cert signed) or skipped
(--missing-cert skip); with the repository down, rows are deferred and a
rerun sends them.

Skips itself until govmail-ca, govmailctl and govmail-notice are built.
"""
import csv
import http.server
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite, free_port, wait_port  # noqa: E402
from ctlenv import RESIDENT_ID_OK, RESIDENT_ID_OK2  # noqa: E402
import test_notice_helpers as nh  # noqa: E402

if not nh.built():
    print("1..0 # SKIP govmail-ca, govmailctl or govmail-notice not built")
    sys.exit(0)

t = Suite()
pki = nh.Pki(t, port=free_port())
official, (off_p12, off_pw) = pki.official()
path = pki.path
ec, ec_id = pki.citizen("zhang", RESIDENT_ID_OK)
rsa, rsa_id = pki.citizen("wang", RESIDENT_ID_OK2, key_type="rsa2048")
nocert, _ = pki.citizen("li", "110105199003071220", cert=False)
with open(path("smtp.pass"), "w") as f:
    f.write("enc-pw\n")
with open(path("c.csv"), "w", encoding="utf-8") as f:
    f.write("\ufeffname,email,amount\n"
            f"张伟,{ec},88.00\n"
            f"王芳,{rsa},120.50\n"
            f"李娜,{nocert},9.90\n")
with open(path("t.tmpl"), "w", encoding="utf-8") as f:
    f.write(f"From: 国家电网 <{official}>\nTo: {{{{name}}}} <{{{{email}}}}>\n"
            "Subject: 电费账单 {{name}}\n\n{{name}}，您的电费为 {{amount}} 元。\n")

srv = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "enc-pw")


def merge(journal, report, *extra):
    return t.run([nh.NOTICE, "merge", "--template", path("t.tmpl"),
                  "--csv", path("c.csv"), "--p12", off_p12,
                  "--p12-pass-file", off_pw, "--journal", path(journal),
                  "--report", path(report), "--connections", "2",
                  "--server", f"localhost:{srv.port}", "--cafile",
                  pki.root, "--user", official, "--password-file",
                  path("smtp.pass"), "--encrypt", "--pki-url", pki.base]
                 + list(extra), timeout=120)


class Repo:
    """The CA repository behind a proxy that counts the TCP connections
    and GETs govmail-notice makes; HTTP/1.1 with keep-alive, over TLS
    (the pki's localhost certificate) when tls is set."""

    def __init__(self, upstream, tls=False, host="127.0.0.1"):
        self.conns = self.gets = 0
        repo = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                repo.conns += 1
                super().setup()

            def do_GET(self):
                repo.gets += 1
                try:
                    with urllib.request.urlopen(upstream + self.path,
                                                timeout=10) as u:
                        code, body = u.status, u.read()
                except urllib.error.HTTPError as e:
                    code, body = e.code, e.read()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer((host, 0), H)
        self.srv.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path("tls.crt"), path("tls.key"))
            self.srv.socket = ctx.wrap_socket(self.srv.socket,
                                              server_side=True)
        port = self.srv.server_address[1]
        name = "localhost" if host == "127.0.0.1" else host
        self.base = f"{'https' if tls else 'http'}://{name}:{port}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def report(name):
    with open(path(name), newline="", encoding="utf-8") as f:
        lines = [x for x in f.read().splitlines() if not x.startswith("#")]
    return {r["address"]: r for r in csv.DictReader(lines)}


# ---- the repository is down: deferred, nothing sent -----------------------
p = merge("jd", "rd.csv")
t.eq(p.returncode, 2, "CA repository down: exit 2")
r = report("rd.csv")
t.ok(all(x["status"] == "deferred" for x in r.values()) and
     len(srv.messages) == 0, "every row deferred, nothing sent",
     (r, srv.messages))

serve = t.spawn([nh.CA, "-c", pki.ctl.conf, "serve"],
                stderr=subprocess.DEVNULL)
t.ok(wait_port(pki.port), "govmail-ca serve listens")

p = merge("jd", "rd.csv")
t.eq(p.returncode, 0, "the rerun with the repository up sends them")
r = report("rd.csv")
t.eq({a: x["status"] for a, x in r.items()},
     {ec: "sent-encrypted", rsa: "sent-encrypted",
      nocert: "sent-signed-no-cert"},
     "report: two encrypted, one signed only (no certificate)")
t.ok("signed_no_cert=1" in p.stdout, "summary counts the missing cert",
     p.stdout)
msgs = {m[1][0]: m[2] for m in srv.messages}
t.eq(len(srv.messages), 3, "three messages")

for who, ident in ((ec, ec_id), (rsa, rsa_id)):
    raw = msgs.get(who, b"")
    hdr = nh.parse(raw)
    t.ok("enveloped-data" in hdr.get("Content-Type", ""),
         f"{who}: application/pkcs7-mime enveloped-data")
    t.ok("电费" not in raw.decode("utf-8", "replace") and
         "您的电费" not in raw.decode("utf-8", "replace"),
         f"{who}: the amount is not readable in transit")
    crt, key = pki.p12_key(*ident)
    enc = path(who + ".eml")
    with open(enc, "wb") as f:
        f.write(raw)
    d = t.run(["openssl", "cms", "-decrypt", "-in", enc, "-recip", crt,
               "-inkey", key, "-out", enc + ".dec"])
    t.eq(d.returncode, 0, f"{who}: openssl cms -decrypt with the "
         "citizen's key", )
    if d.returncode == 0:
        inner = open(enc + ".dec", "rb").read()
        content = nh.verify_signed(t, inner, pki.root, pki.dir, who)
        t.ok(content is not None, f"{who}: the inner signature verifies "
             "(-purpose smimesign)")
        if content is not None:
            t.ok("您的电费为" in nh.text_of(content),
                 f"{who}: the personalised bill inside")
# the wrong citizen's key cannot open it
crt, key = pki.p12_key(*rsa_id)
d = t.run(["openssl", "cms", "-decrypt", "-in", path(ec + ".eml"),
           "-recip", crt, "-inkey", key, "-out", os.devnull])
t.ok(d.returncode != 0, "another citizen's key does not decrypt it")

raw = msgs.get(nocert, b"")
t.ok(nh.verify_signed(t, raw, pki.root, pki.dir, "nocert") is not None,
     "no certificate: sent signed only, and it verifies")

# ---- --missing-cert skip --------------------------------------------------
n0 = len(srv.messages)
p = merge("js", "rs.csv", "--missing-cert", "skip")
r = report("rs.csv")
t.eq(r[nocert]["status"], "skipped-no-cert",
     "--missing-cert skip: listed as skipped")
t.eq(sorted(m[1][0] for m in srv.messages[n0:]), sorted([ec, rsa]),
     "--missing-cert skip: only the two with certificates were sent")
t.eq(p.returncode, 0, "--missing-cert skip: exit 0 (a chosen policy)")

# ---- one kept-alive connection to the repository, over http and https ----
for tls in (False, True):
    kind = "https" if tls else "http"
    repo = Repo(pki.base, tls=tls)
    n0 = len(srv.messages)
    p = merge("jk" + kind, "rk" + kind + ".csv", "--connections", "1",
              "--pki-url", repo.base)
    r = report("rk" + kind + ".csv")
    t.eq({a: x["status"] for a, x in r.items()},
         {ec: "sent-encrypted", rsa: "sent-encrypted",
          nocert: "sent-signed-no-cert"},
         f"{kind} repository: two encrypted, one signed only")
    t.eq((repo.gets, repo.conns), (3, 1),
         f"{kind} repository: three GETs over one connection")
    t.eq(len(srv.messages) - n0, 3, f"{kind} repository: three sent")
    repo.stop()

# An https repository whose certificate does not name it (the pki's
# certificate is for localhost and 127.0.0.1) is refused before any GET:
# the rows are deferred, nothing is sent.
repo = Repo(pki.base, tls=True, host="127.0.0.2")
n0 = len(srv.messages)
p = t.run([nh.NOTICE, "merge", "--template", path("t.tmpl"),
           "--csv", path("c.csv"), "--p12", off_p12,
           "--p12-pass-file", off_pw, "--journal", path("jbad"),
           "--report", path("rbad.csv"), "--connections", "1",
           "--server", f"localhost:{srv.port}", "--cafile", pki.root,
           "--user", official, "--password-file", path("smtp.pass"),
           "--encrypt", "--pki-url", repo.base], timeout=120)
r = report("rbad.csv")
t.ok(p.returncode != 0 and
     all(x["status"] == "deferred" for x in r.values()) and
     len(srv.messages) == n0 and repo.gets == 0,
     "https repository under another name: deferred, nothing sent",
     (p.returncode, r, p.stderr, repo.gets))
repo.stop()
t.stop(serve)
srv.stop()
t.done()
