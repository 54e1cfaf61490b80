#!/usr/bin/env python3
"""Scenario-file runner: replays tests/e2e/test_imapd_*.scn (client lines
and the server lines expected, as regular expressions) against a fresh
govmail-imapd over TLS.  The recorded Thunderbird-like session covers
CAPABILITY, AUTHENTICATE, ID, NAMESPACE, ENABLE, LIST with SPECIAL-USE,
SELECT with CONDSTORE, UID FETCH of header fields, STORE and IDLE."""
import base64
import glob
import os
import re

from tap import Suite, TOP_SRCDIR
from imapdenv import Imapd, Raw

t = Suite()
d = Imapd(t, plaintext_loopback=False)
USER, PASS = "tb@city.example", "tb-pw"
d.ctl("domain", "add", "city.example")
d.user(USER, PASS)
for i in (1, 2):
    d.deliver(USER, f"From: a@city.example\r\nTo: {USER}\r\nSubject: s{i}"
                    f"\r\nMessage-ID: <s{i}@x>\r\n\r\nbody {i}\r\n")
d.start()


def replay(path):
    name = os.path.basename(path)
    r = Raw(d.imaps, tls=True, timeout=10)
    pending = [r.greeting]
    plain = base64.b64encode(f"\0{USER}\0{PASS}".encode()).decode()
    with open(path, encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f]
    for no, ln in enumerate(lines, 1):
        if not ln or ln.startswith("#"):
            continue
        kind, _, arg = ln.partition(" ")
        where = f"{name}:{no}"
        if kind == "C:":
            arg = arg.replace("$USER", USER).replace("$PASS", PASS)
            arg = arg.replace("$PLAIN", plain)
            r.send(arg + "\r\n")
        elif kind == "DELIVER":
            d.deliver(USER, f"To: {USER}\r\n{arg}\r\n\r\nx\r\n")
        elif kind in ("S:", "S~"):
            while True:
                if pending:
                    got = pending.pop(0)
                else:
                    raw = r.f.readline()
                    if not raw:
                        t.ok(False, f"{where}: EOF, expected {arg!r}")
                        r.close()
                        return
                    got = raw.decode("utf-8", "replace").rstrip("\r\n")
                if re.fullmatch(arg, got):
                    break
                if kind == "S:":
                    t.ok(False, f"{where}: expected {arg!r}", got)
                    r.close()
                    return
        else:
            t.ok(False, f"{where}: unknown line kind {kind!r}")
            return
    t.ok(True, f"{name}: every expected line seen")
    r.close()


files = sorted(glob.glob(os.path.join(TOP_SRCDIR, "tests", "e2e",
                                      "test_imapd_*.scn")))
t.ok(len(files) >= 1, "at least one scenario file", files)
for p in files:
    replay(p)
d.stop()
t.done()
