#!/usr/bin/env python3
"""govmail-imapd with real clients: curl (imap:// with --ssl-reqd, and
imaps://), mbsync (isync) syncing a whole account twice and pushing a
flag back to the server, and fetchmail (when installed) retrieving over
imaps with certificate checking, then finding nothing new."""
import glob
import imaplib
import os
import shutil
import subprocess

from tap import Suite
from imapdenv import Imapd

t = Suite()
d = Imapd(t)
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
for i in range(1, 4):
    d.deliver(A, f"From: bob@city.example\r\nTo: {A}\r\nSubject: curl {i}"
                 f"\r\nMessage-ID: <c{i}@city.example>\r\n\r\n"
                 f"line {i}\r\n".encode())
d.start()
cert = os.path.join(d.dir, "cert.pem")


def curl(url, *extra):
    return t.run(["curl", "-sS", "--max-time", "30", "--cacert", cert,
                  "--resolve", f"localhost:{d.imap}:127.0.0.1",
                  "--resolve", f"localhost:{d.imaps}:127.0.0.1",
                  "-u", f"{A}:alice-pw", *extra, url], timeout=60)


def case_curl(t):
    p = curl(f"imap://localhost:{d.imap}/INBOX;UID=2", "--ssl-reqd")
    t.ok(p.returncode == 0 and "Subject: curl 2" in p.stdout and
         "line 2" in p.stdout, "curl imap:// --ssl-reqd fetches UID 2",
         p.stdout + p.stderr)
    p = curl(f"imaps://localhost:{d.imaps}/INBOX;UID=3")
    t.ok(p.returncode == 0 and "Subject: curl 3" in p.stdout,
         "curl imaps:// fetches UID 3", p.stdout + p.stderr)
    p = curl(f"imaps://localhost:{d.imaps}/")
    t.ok(p.returncode == 0 and "Sent" in p.stdout and "INBOX" in p.stdout,
         "curl imaps:// lists the mailboxes", p.stdout + p.stderr)
    p = curl(f"imaps://localhost:{d.imaps}/INBOX", "-X",
             "SEARCH SUBJECT \"curl 1\"")
    t.ok(p.returncode == 0 and "SEARCH 1" in p.stdout,
         "curl custom SEARCH", p.stdout + p.stderr)
    p = t.run(["curl", "-sS", "--max-time", "30", "--cacert", cert,
               "--resolve", f"localhost:{d.imaps}:127.0.0.1",
               "-u", f"{A}:wrong", f"imaps://localhost:{d.imaps}/INBOX"],
              timeout=60)
    t.ok(p.returncode != 0, "curl with a wrong password fails",
         p.stdout + p.stderr)


def case_mbsync(t):
    if shutil.which("mbsync") is None:
        t.diag("mbsync not installed: its cases are left out")
        return
    home = os.path.join(d.dir, "mbsync")
    maildir = os.path.join(home, "mail")
    os.makedirs(maildir, exist_ok=True)
    rc = os.path.join(home, "mbsyncrc")
    with open(rc, "w") as f:
        f.write(f"""IMAPAccount gov
Host localhost
Port {d.imaps}
User {A}
Pass alice-pw
TLSType IMAPS
CertificateFile {cert}

IMAPStore gov-remote
Account gov

MaildirStore gov-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel gov
Far :gov-remote:
Near :gov-local:
Patterns *
Create Near
Sync All
SyncState *
""")
    env = {"HOME": home}

    def sync():
        return t.run(["mbsync", "-c", rc, "-a"], env=env, timeout=120)
    # isync 1.4 spells it SSLType; newer ones TLSType.
    p = sync()
    if "TLSType" in p.stderr:
        with open(rc) as f:
            text = f.read().replace("TLSType", "SSLType")
        with open(rc, "w") as f:
            f.write(text)
        p = sync()
    t.ok(p.returncode == 0, "mbsync: first sync", p.stdout + p.stderr)
    inbox = glob.glob(os.path.join(maildir, "INBOX", "cur", "*")) + \
        glob.glob(os.path.join(maildir, "INBOX", "new", "*"))
    t.eq(len(inbox), 3, "mbsync fetched the 3 INBOX messages")
    for box in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        t.ok(os.path.isdir(os.path.join(maildir, box)),
             f"mbsync created {box}")
    p = sync()
    t.ok(p.returncode == 0, "mbsync: second sync", p.stdout + p.stderr)
    inbox2 = glob.glob(os.path.join(maildir, "INBOX", "cur", "*")) + \
        glob.glob(os.path.join(maildir, "INBOX", "new", "*"))
    t.eq(len(inbox2), 3, "second sync: still 3, nothing duplicated")
    # flag one message locally and push it back
    victim = sorted(inbox2)[0]
    base = os.path.basename(victim)
    name, _, flags = base.partition(":2,")
    newname = name + ":2," + "".join(sorted(set(flags + "F")))
    os.rename(victim, os.path.join(maildir, "INBOX", "cur", newname))
    p = sync()
    t.ok(p.returncode == 0, "mbsync: third sync pushes the flag",
         p.stdout + p.stderr)
    m = d.imap_tls()
    m.login(A, "alice-pw")
    m.select("INBOX")
    typ, data = m.search(None, "FLAGGED")
    t.eq(len(data[0].split()), 1, "the server has the flag mbsync pushed")
    m.logout()


def case_fetchmail(t):
    if shutil.which("fetchmail") is None:
        t.diag("fetchmail not installed: its cases are left out")
        return
    home = os.path.join(d.dir, "fetchmail")
    os.makedirs(home, exist_ok=True)
    out = os.path.join(home, "out.mbox")
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
        f.write(f"poll localhost protocol IMAP port {d.imaps}\n"
                f'  user "{A}" password "alice-pw"\n'
                f'  ssl sslcertck sslcertfile "{cert}"\n'
                f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
                "  keep\n")
    os.chmod(rc, 0o600)
    env = {"HOME": home}
    p = t.run(["fetchmail", "-f", rc, "--nosyslog", "-N", "-a"], env=env,
              timeout=120)
    t.ok(p.returncode == 0, "fetchmail retrieves over imaps",
         p.stdout + p.stderr)
    try:
        with open(out, "rb") as f:
            got = f.read()
    except OSError:
        got = b""
    t.ok(got.count(b"Subject: curl ") == 3,
         "fetchmail delivered the 3 INBOX messages", got[:300])
    p = t.run(["fetchmail", "-f", rc, "--nosyslog", "-N"], env=env,
              timeout=120)
    t.eq(p.returncode, 1, "second fetchmail run: no new mail (exit 1)")


for fn in (case_curl, case_mbsync, case_fetchmail):
    t.run_case(fn)
d.stop()
t.done()
