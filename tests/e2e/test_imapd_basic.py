#!/usr/bin/env python3
"""govmail-imapd end to end with Python's imaplib: both TLS modes, login,
the special-use folders, SELECT/FETCH/STORE/SEARCH/COPY/MOVE/APPEND/
EXPUNGE, STATUS, LIST variants, QUOTA, ENABLE, IDLE with mail delivered by
govmailctl, and two sessions watching each other's changes."""
import base64
import imaplib
import re
import socket
import time

from tap import Suite
from imapdenv import Imapd

imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))


def mutf7(name):
    """Modified UTF-7 (RFC 3501 5.1.3) of a mailbox name."""
    out, run = [], ""

    def flush():
        nonlocal run
        if run:
            b = base64.b64encode(run.encode("utf-16-be")).decode()
            out.append("&" + b.rstrip("=").replace("/", ",") + "-")
            run = ""
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run += ch
    flush()
    return "".join(out)


t = Suite()
d = Imapd(t)
A = "alice@city.example"
B = "bob@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.user(B, "bob-pw")


def msg(subject, body="hello\r\n", frm="Bob <bob@city.example>",
        extra=""):
    return (f"From: {frm}\r\nTo: {A}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@city.example>\r\n"
            "Date: Sat, 21 Nov 2026 10:00:00 +0800\r\n" + extra +
            f"\r\n{body}").encode()


for i in range(1, 6):
    d.deliver(A, msg(f"message {i}", f"body number {i}\r\n"))
d.deliver(A, msg("=?UTF-8?B?5pS/5bqc6YCa55+l?= notice",
                 "=E6=94=BF=E7=AD=96 policy\r\n",
                 extra="MIME-Version: 1.0\r\nContent-Type: text/plain; "
                 "charset=utf-8\r\nContent-Transfer-Encoding: "
                 "quoted-printable\r\n"))
gbk = "水费账单".encode("gb18030")
import base64
d.deliver(A, msg("bill", base64.encodebytes(gbk).decode().replace("\n",
                                                                    "\r\n"),
                 extra="MIME-Version: 1.0\r\nContent-Type: text/plain; "
                 "charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n"))
d.start()


def case_tls_login(t):
    m = d.imap_tls()
    t.ok("AUTH=PLAIN" in m.capabilities, "imaps: AUTH=PLAIN announced")
    typ, data = m.login(A, "alice-pw")
    t.eq(typ, "OK", "imaps: LOGIN ok")
    typ, data = m.capability()
    caps = data[0].decode().split()
    for c in ("IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "SPECIAL-USE",
              "ESEARCH", "QUOTA", "NAMESPACE"):
        t.ok(c in caps, f"capability {c} after login")
    m.logout()


def case_starttls(t):
    m = d.imap_plain()
    t.ok("LOGINDISABLED" in m.capabilities,
         "plain port: LOGINDISABLED before STARTTLS (loopback not allowed)")
    try:
        m.login(A, "alice-pw")
        t.ok(False, "LOGIN before STARTTLS refused")
    except imaplib.IMAP4.error as e:
        t.ok("PRIVACYREQUIRED" in str(e) or "disabled" in str(e),
             "LOGIN before STARTTLS refused", str(e))
    m.shutdown()
    m = d.imap_starttls()
    t.ok("AUTH=PLAIN" in m.capabilities and
         "LOGINDISABLED" not in m.capabilities,
         "after STARTTLS: AUTH=PLAIN, no LOGINDISABLED", m.capabilities)
    typ, _ = m.login(A, "alice-pw")
    t.eq(typ, "OK", "LOGIN after STARTTLS")
    m.logout()


def case_bad_password(t):
    m = d.imap_tls()
    try:
        m.login(A, "wrong")
        t.ok(False, "wrong password refused")
    except imaplib.IMAP4.error as e:
        t.ok("AUTHENTICATIONFAILED" in str(e), "wrong password refused",
             str(e))
    m.logout()


def case_authenticate(t):
    m = d.imap_tls()
    typ, _ = m.authenticate("PLAIN",
                            lambda _: f"\0{A}\0alice-pw".encode())
    t.eq(typ, "OK", "AUTHENTICATE PLAIN")
    m.logout()
    # SASL-IR in one line, raw
    from imapdenv import Raw
    r = Raw(d.imaps, tls=True)
    ir = base64.b64encode(f"\0{A}\0alice-pw".encode()).decode()
    lines, tagged = r.cmd("a1", f"AUTHENTICATE PLAIN {ir}")
    t.ok(tagged.startswith("a1 OK"), "AUTHENTICATE PLAIN with SASL-IR",
         tagged)
    r.close()
    r = Raw(d.imaps, tls=True)
    r.send("a1 AUTHENTICATE LOGIN\r\n")
    c1 = r.line()
    r.send(base64.b64encode(A.encode()) + b"\r\n")
    c2 = r.line()
    r.send(base64.b64encode(b"alice-pw") + b"\r\n")
    _, tagged = r.until("a1")
    t.ok(c1.startswith("+ ") and c2.startswith("+ ") and
         tagged.startswith("a1 OK"), "AUTHENTICATE LOGIN in steps",
         f"{c1} {c2} {tagged}")
    r.close()


def case_list(t):
    m = d.imap_tls()
    m.login(A, "alice-pw")
    typ, data = m.list()
    names = [x.decode() for x in data]
    for box, attr in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"),
                      ("Trash", "\\Trash"), ("Junk", "\\Junk"),
                      ("Archive", "\\Archive")):
        t.ok(any(box in n and attr in n for n in names),
             f"LIST shows {box} with {attr}", names)
    t.ok(any('"INBOX"' in n or " INBOX" in n for n in names),
         "LIST shows INBOX", names)
    typ, data = m.lsub()
    t.ok(len(data) >= 6, "LSUB: all special folders subscribed", data)
    enc = mutf7("Projects/城市")
    typ, data = m.create(enc)
    t.eq(typ, "OK", "CREATE with Chinese name (modified UTF-7)")
    typ, data = m.list('""', "Projects/*")
    t.ok(enc.encode() in data[0], "LIST returns modified UTF-7", data)
    typ, data = m.list('""', "Projects")
    t.ok(b"\\HasChildren" in data[0], "parent has \\HasChildren", data)
    typ, data = m.rename(enc, "Projects/renamed")
    t.eq(typ, "OK", "RENAME")
    typ, data = m.delete("Projects/renamed")
    t.eq(typ, "OK", "DELETE")
    typ, data = m._simple_command("CREATE", "&Jjo-bad-&AGE-")
    t.eq(typ, "NO", "CREATE with invalid modified UTF-7 refused")
    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN SIZE)")
    t.ok(re.search(rb"MESSAGES 7 .*UNSEEN 7 SIZE \d+", data[0]),
         "STATUS with SIZE", data)
    typ, data = m.getquotaroot("INBOX")
    t.ok(typ == "OK" and any(b"STORAGE" in x for x in data[1]),
         "GETQUOTAROOT", data)
    typ, data = m._simple_command("LIST", '(SPECIAL-USE) "" "*" '
                                  'RETURN (STATUS (MESSAGES))')
    typ, data = m._untagged_response(typ, data, "LIST")
    t.ok(len(data) == 5 and all(b"INBOX" not in x for x in data),
         "LIST (SPECIAL-USE) lists only the 5 special folders", data)
    m.logout()


def case_fetch(t):
    m = d.imap_tls()
    m.login(A, "alice-pw")
    typ, data = m.select("INBOX")
    t.eq(data[0], b"7", "SELECT: 7 EXISTS")
    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
    t.eq(len(data), 7, "FETCH 1:* gives 7 responses")
    typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    t.eq(data[0][1], b"Subject: message 2\r\n\r\n", "HEADER.FIELDS")
    typ, data = m.fetch("2", "(BODY.PEEK[TEXT])")
    t.eq(data[0][1], b"body number 2\r\n", "BODY.PEEK[TEXT]")
    typ, data = m.fetch("2", "(BODY.PEEK[]<0.5>)")
    t.eq(data[0][1], b"From:", "partial BODY[]<0.5>")
    typ, data = m.fetch("2", "(FLAGS)")
    t.ok(b"\\Seen" not in data[0], "PEEK does not set \\Seen", data)
    typ, data = m.fetch("2", "(BODY[TEXT])")
    typ, data = m.fetch("2", "(FLAGS)")
    t.ok(b"\\Seen" in data[0], "BODY[] sets \\Seen", data)
    typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE INTERNALDATE)")
    t.ok(b"ENVELOPE (" in data[0] and b"BODYSTRUCTURE (" in data[0]
         and b"message 1" in data[0], "ENVELOPE and BODYSTRUCTURE", data)
    typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
    t.ok(all(b"UID" in x for x in data), "UID FETCH includes UID", data)
    typ, data = m.fetch("1", "(RFC822.HEADER)")
    t.ok(data[0][1].startswith(b"From: Bob"), "RFC822.HEADER")
    try:
        m.fetch("99", "(FLAGS)")
        t.ok(False, "FETCH of a sequence number beyond EXISTS is BAD")
    except imaplib.IMAP4.error as e:
        t.ok("BAD" in str(e), "FETCH of a sequence number beyond EXISTS "
             "is BAD", str(e))
    m.logout()


def case_store_search(t):
    m = d.imap_tls()
    m.login(A, "alice-pw")
    m.select("INBOX")
    typ, data = m.store("1", "+FLAGS", "(\\Flagged $Important)")
    t.ok(b"\\Flagged" in data[0] and b"$Important" in data[0],
         "STORE +FLAGS with a keyword", data)
    typ, data = m.search(None, "FLAGGED")
    t.eq(data[0], b"1", "SEARCH FLAGGED")
    typ, data = m.search(None, "KEYWORD", "$Important")
    t.eq(data[0], b"1", "SEARCH KEYWORD")
    typ, data = m.search(None, "SUBJECT", '"message 3"')
    t.eq(data[0], b"3", "SEARCH SUBJECT")
    # Header keys read the header block alone: they match header text and
    # never the body.
    typ, data = m.search(None, "HEADER", "Subject", '"message 2"')
    t.eq(data[0], b"2", "SEARCH HEADER Subject")
    typ, data = m.search(None, "HEADER", "Subject", '"body number"')
    t.eq(data[0], b"", "SEARCH HEADER does not look in the body")
    typ, data = m.search(None, "TO", '"alice@city"', "FROM", '"bob"',
                         "SUBJECT", '"message"')
    t.eq(data[0], b"1 2 3 4 5", "SEARCH TO FROM SUBJECT together")
    typ, data = m.search(None, "OR", "SUBJECT", '"message 4"', "BODY",
                         '"number 5"')
    t.eq(data[0], b"4 5", "SEARCH OR SUBJECT BODY")
    typ, data = m.search(None, "NOT", "SEEN")
    t.ok(b"2" not in data[0].split(), "SEARCH NOT SEEN", data)
    m.literal = "政府通知".encode()
    typ, data = m.search("UTF-8", "SUBJECT")
    t.eq(data[0], b"6", "SEARCH CHARSET UTF-8 finds an encoded-word "
         "Chinese subject")
    m.literal = "政策".encode()
    typ, data = m.search("UTF-8", "BODY")
    t.eq(data[0], b"6", "SEARCH BODY finds quoted-printable Chinese")
    m.literal = "水费".encode()
    typ, data = m.search("UTF-8", "TEXT")
    t.eq(data[0], b"7", "SEARCH TEXT finds base64 GB2312 Chinese")
    typ, data = m.search("BIG-5", "ALL")
    t.eq(typ, "NO", "SEARCH with an unknown charset: NO [BADCHARSET]")
    typ, data = m.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    es = m.untagged_responses.pop("ESEARCH", [b""])
    t.ok(typ == "OK" and b"COUNT 7" in es[0] and b"MIN 1" in es[0],
         "ESEARCH RETURN (MIN MAX COUNT)", es)
    typ, data = m.search(None, "LARGER", "10", "SMALLER", "100000",
                         "SINCE", "1-Jan-2000")
    t.eq(len(data[0].split()), 7, "SEARCH LARGER SMALLER SINCE")
    m.logout()


def case_copy_move_append_expunge(t):
    m = d.imap_tls()
    m.login(A, "alice-pw")
    m.select("INBOX")
    typ, data = m.copy("1:2", "Archive")
    t.ok(typ == "OK", "COPY", data)
    t.ok(re.match(rb"\[COPYUID \d+ \d+:\d+ \d+:\d+\]", data[0]),
         "COPY answers [COPYUID validity src dst]", data)
    typ, data = m._simple_command("MOVE", "3", "Trash")
    t.eq(typ, "OK", "MOVE")
    typ, data = m.select("INBOX")
    t.eq(data[0], b"6", "MOVE removed the message from INBOX")
    typ, data = m.status("Archive", "(MESSAGES)")
    t.ok(b"MESSAGES 2" in data[0], "Archive holds 2 after COPY", data)
    typ, data = m.append("Drafts", "(\\Draft)", None,
                         b"Subject: draft\r\n\r\nwip\r\n")
    t.ok(typ == "OK" and b"APPENDUID" in data[0], "APPEND with APPENDUID",
         data)
    typ, data = m.append("Nowhere", None, None, b"Subject: x\r\n\r\nx\r\n")
    t.ok(typ == "NO" and b"TRYCREATE" in data[0],
         "APPEND to a missing mailbox: NO [TRYCREATE]", data)
    m.store("1", "+FLAGS", "\\Deleted")
    typ, data = m.expunge()
    t.eq(data[0], b"1", "EXPUNGE reports sequence 1")
    typ, data = m.select("INBOX")
    t.eq(data[0], b"5", "5 left after EXPUNGE")
    m.logout()


def case_two_sessions_idle(t):
    m1 = d.imap_tls()
    m1.login(A, "alice-pw")
    m1.select("INBOX")
    m2 = d.imap_tls()
    m2.login(A, "alice-pw")
    m2.select("INBOX")
    m2.store("1", "+FLAGS", "\\Answered")
    typ, data = m1.noop()
    fetches = m1.untagged_responses.get("FETCH", [])
    t.ok(any(b"\\Answered" in x for x in fetches),
         "session 1 sees session 2's flag change on NOOP", fetches)
    # IDLE: a delivery shows up within a second
    tag = m1._new_tag()
    m1.send(tag + b" IDLE\r\n")
    cont = m1.readline()
    t.ok(cont.startswith(b"+"), "IDLE continuation", cont)
    start = time.time()
    d.deliver(A, msg("idle test"))
    m1.sock.settimeout(5)
    line = m1.readline()
    t.ok(b"EXISTS" in line, "IDLE: new mail announced (EXISTS)", line)
    t.diag(f"IDLE notice after {time.time() - start:.2f}s")
    m1.send(b"DONE\r\n")
    rest = m1.readline()
    while rest.startswith(b"*"):
        rest = m1.readline()
    t.ok(rest.startswith(tag + b" OK"), "IDLE ends with DONE", rest)
    # expunge in m2 is seen by m1 with consistent sequence numbers
    m2.noop()
    m2.store("2", "+FLAGS", "\\Deleted")
    m2.expunge()
    typ, data = m1.noop()
    t.ok(m1.untagged_responses.get("EXPUNGE") == [b"2"] or
         b"2" in m1.untagged_responses.get("EXPUNGE", []),
         "session 1 gets EXPUNGE 2", m1.untagged_responses)
    m1.untagged_responses.clear()
    m2.noop()
    m2.untagged_responses.clear()
    typ, d1 = m1.fetch("1:*", "(UID)")
    typ, d2 = m2.fetch("1:*", "(UID)")
    t.eq(d1, d2, "both sessions agree on sequence numbers and UIDs")
    m1.logout()
    m2.logout()


def case_enable_condstore(t):
    m = d.imap_tls()
    m.login(B, "bob-pw")
    typ, data = m._simple_command("ENABLE", "CONDSTORE UTF8=ACCEPT")
    t.ok(typ == "OK", "ENABLE CONDSTORE UTF8=ACCEPT")
    typ, data = m._simple_command("SELECT", "INBOX (CONDSTORE)")
    t.ok(any(b"HIGHESTMODSEQ" in x for x in
             m.untagged_responses.get("OK", [])), "SELECT (CONDSTORE)",
         m.untagged_responses)
    typ, data = m.namespace()
    t.eq(data[0], b'(("" "/")) NIL NIL', "NAMESPACE")
    typ, data = m._simple_command("ID", "NIL")
    t.eq(typ, "OK", "ID")
    m.logout()


def case_sort_thread(t):
    C = "carol@city.example"
    d.user(C, "carol-pw")
    mails = [
        ("<t1@x>", "", "Plan", "Sat, 21 Nov 2026 10:00:00 +0000", 300),
        ("<t2@x>", "<t1@x>", "Re: Plan", "Sat, 21 Nov 2026 11:00:00 +0000",
         100),
        ("<t3@x>", "", "Budget", "Sat, 21 Nov 2026 09:00:00 +0000", 200),
        ("<t4@x>", "<t1@x> <t2@x>", "Re: Re: Plan",
         "Sat, 21 Nov 2026 12:00:00 +0000", 50),
        ("<t5@x>", "<t1@x> <gone@x>", "Fwd: [city] Plan (fwd)",
         "Sat, 21 Nov 2026 13:00:00 +0000", 10),
    ]
    for mid, refs, subj, date, size in mails:
        hdr = (f"From: x@city.example\r\nTo: {C}\r\nSubject: {subj}\r\n"
               f"Message-ID: {mid}\r\nDate: {date}\r\n")
        if refs:
            hdr += f"References: {refs}\r\n"
        d.deliver(C, (hdr + "\r\n" + "x" * size + "\r\n").encode())
    m = d.imap_tls()
    m.login(C, "carol-pw")
    m.select("INBOX")
    typ, data = m.sort("(SUBJECT DATE)", "UTF-8", "ALL")
    t.eq(data[0], b"3 1 2 4 5",
         "SORT (SUBJECT DATE): base subjects, then date")
    typ, data = m.sort("(REVERSE SIZE)", "UTF-8", "ALL")
    t.eq(data[0], b"1 3 2 4 5", "SORT (REVERSE SIZE)")
    typ, data = m.sort("(DATE)", "UTF-8", "NOT", "SUBJECT", "Budget")
    t.eq(data[0], b"1 2 4 5", "SORT with a search program")
    typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
    t.eq(data[0], b"(3)(1 (2 4)(5))",
         "THREAD REFERENCES (nearest ancestor present)")
    typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    t.eq(data[0], b"(3)(1 (2)(4)(5))", "THREAD ORDEREDSUBJECT")
    typ, data = m.uid("SORT", "(ARRIVAL)", "UTF-8", "ALL")
    t.eq(data[0], b"1 2 3 4 5", "UID SORT (ARRIVAL)")
    m.logout()


def case_condstore_qresync(t):
    D = "dave@city.example"
    d.user(D, "dave-pw")
    for i in range(1, 5):
        d.deliver(D, msg(f"q {i}"))
    m = d.imap_tls()
    m.login(D, "dave-pw")
    m._simple_command("ENABLE", "QRESYNC")
    typ, data = m.select("INBOX")
    validity = int(m.untagged_responses["UIDVALIDITY"][0])
    modseq = int(m.untagged_responses["HIGHESTMODSEQ"][0])
    m.untagged_responses.clear()
    # UNCHANGEDSINCE: message 1 changed after modseq -> MODIFIED
    m.store("1", "+FLAGS", "(\\Flagged)")
    typ, data = m._simple_command("STORE", f"1:2 (UNCHANGEDSINCE {modseq})",
                                  "+FLAGS", "(\\Answered)")
    t.ok(typ == "OK" and b"[MODIFIED 1]" in data[-1],
         "STORE UNCHANGEDSINCE reports MODIFIED for a changed message",
         data)
    m.store("3", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.close()
    m.untagged_responses.clear()
    typ, data = m._simple_command(
        "SELECT", f"INBOX (QRESYNC ({validity} {modseq}))")
    t.ok(typ == "OK", "SELECT (QRESYNC ...)", data)
    m.state = "SELECTED"
    van = m.untagged_responses.get("VANISHED", [])
    t.ok(any(b"(EARLIER) 3" in v for v in van),
         "QRESYNC: VANISHED (EARLIER) 3", m.untagged_responses)
    fetches = m.untagged_responses.get("FETCH", [])
    t.ok(any(b"UID 1" in f and b"MODSEQ" in f for f in fetches),
         "QRESYNC: changed flags of UID 1 with MODSEQ", fetches)
    m.untagged_responses.clear()
    typ, data = m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq})")
    t.ok(typ == "OK" and len(data) == 2,
         "UID FETCH CHANGEDSINCE: only the 2 changed messages", data)
    m.logout()


def case_utf8_accept(t):
    m = d.imap_tls()
    m.login(B, "bob-pw")
    m._simple_command("ENABLE", "UTF8=ACCEPT")
    m._encoding = "utf-8"
    typ, data = m._simple_command("CREATE", '"报告"')
    t.eq(typ, "OK", "UTF8=ACCEPT: CREATE with a UTF-8 name")
    typ, data = m._simple_command("LIST", '""', '"报*"')
    data = m.untagged_responses.pop("LIST", [])
    t.ok(any("报告".encode() in x for x in data),
         "UTF8=ACCEPT: LIST answers in UTF-8", data)
    m.logout()


def case_deferred_expunge(t):
    m1 = d.imap_tls()
    m1.login(B, "bob-pw")
    for i in range(3):
        m1.append("INBOX", None, None, f"Subject: e{i}\r\n\r\nx\r\n"
                  .encode())
    m1.select("INBOX")
    m2 = d.imap_tls()
    m2.login(B, "bob-pw")
    m2.select("INBOX")
    m2.store("1", "+FLAGS", "(\\Deleted)")
    m2.expunge()
    m1.untagged_responses.clear()
    typ, data = m1.fetch("1:*", "(UID)")
    t.ok("EXPUNGE" not in m1.untagged_responses,
         "no EXPUNGE while answering a non-UID FETCH",
         m1.untagged_responses)
    typ, data = m1.noop()
    t.eq(m1.untagged_responses.get("EXPUNGE"), [b"1"],
         "the EXPUNGE arrives with the next NOOP")
    m1.logout()
    m2.logout()


def case_rate_limit(t):
    m = None
    refused = None
    for i in range(12):
        m = d.imap_tls()
        try:
            m.login(D_RL, "wrong")
        except imaplib.IMAP4.error as e:
            refused = str(e)
        m.shutdown()
    m = d.imap_tls()
    try:
        m.login(D_RL, "rl-pw")
        ok = False
    except imaplib.IMAP4.error as e:
        ok = "Too many" in str(e)
        refused = str(e)
    t.ok(ok, "after 10 failures from one address even the right password "
         "is refused", refused)
    m.shutdown()


def case_rev2_binary(t):
    E = "erin@city.example"
    d.user(E, "erin-pw")
    blob = bytes(range(256)) * 40
    b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    d.deliver(E, ("From: x@city.example\r\nSubject: att\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                  "boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain; "
                  "charset=utf-8\r\nContent-Transfer-Encoding: "
                  "quoted-printable\r\n\r\ncaf=C3=A9\r\n--BB\r\n"
                  "Content-Type: application/octet-stream\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n" + b64 +
                  "--BB--\r\n").encode())
    m = d.imap_tls()
    m.login(E, "erin-pw")
    typ, data = m._simple_command("ENABLE", "IMAP4rev2")
    t.ok(b"IMAP4rev2" in m.untagged_responses.get("ENABLED", [b""])[0],
         "ENABLE IMAP4rev2", m.untagged_responses)
    m.untagged_responses.clear()
    m.select("INBOX")
    t.ok("RECENT" not in m.untagged_responses,
         "IMAP4rev2: no RECENT at SELECT", m.untagged_responses)
    typ, data = m.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[2])")
    t.ok(data[0][1] == "café".encode() and
         b"BINARY.SIZE[2] %d" % len(blob) in data[1],
         "BINARY[1] decodes quoted-printable; BINARY.SIZE[2]", data)
    typ, data = m.fetch("1", "(BINARY.PEEK[2])")
    t.ok(data[0][1] == blob and b"~{" in data[0][0],
         "BINARY[2] decodes base64 into a literal8 (10 KB, NULs)",
         data[0][0])
    m.untagged_responses.clear()
    typ, data = m._simple_command("SEARCH", "ALL")
    t.ok(b"ALL 1" in m.untagged_responses.get("ESEARCH", [b""])[0],
         "IMAP4rev2: SEARCH answers ESEARCH", m.untagged_responses)
    typ, data = m.status("INBOX", "(DELETED MESSAGES)")
    t.ok(b"DELETED 0" in data[0], "STATUS DELETED", data)
    m.logout()


def case_quota(t):
    Q = "quota@city.example"
    d.user(Q, "q-pw", "--quota-messages", "2")
    m = d.imap_tls()
    m.login(Q, "q-pw")
    r1 = m.append("INBOX", None, None, b"Subject: 1\r\n\r\nx\r\n")
    r2 = m.append("INBOX", None, None, b"Subject: 2\r\n\r\nx\r\n")
    r3 = m.append("INBOX", None, None, b"Subject: 3\r\n\r\nx\r\n")
    t.ok(r1[0] == "OK" and r2[0] == "OK" and r3[0] == "NO" and
         b"OVERQUOTA" in r3[1][0], "APPEND over the message quota: NO "
         "[OVERQUOTA]", (r1, r2, r3))
    typ, data = m.getquota('""')
    t.ok(typ == "OK" and b"MESSAGE 2 2" in data[0], "GETQUOTA", data)
    m.logout()


def case_searchres_misc(t):
    F = "frank@city.example"
    d.user(F, "frank-pw")
    big5 = "市民信箱".encode("big5")
    d.deliver(F, b"Subject: big5\r\nMIME-Version: 1.0\r\nContent-Type: "
              b"text/plain; charset=big5\r\nContent-Transfer-Encoding: "
              b"8bit\r\n\r\n" + big5 + b"\r\n")
    d.deliver(F, b"Subject: other\r\n\r\nplain\r\n")
    m = d.imap_tls()
    m.login(F, "frank-pw")
    m.select("INBOX")
    m.literal = "市民".encode()
    typ, data = m.search("UTF-8", "BODY")
    t.eq(data[0], b"1", "SEARCH BODY finds Big5 text converted to UTF-8")
    typ, data = m.uid("SEARCH", "RETURN", "(SAVE)", "SUBJECT", "other")
    t.eq(typ, "OK", "SEARCH RETURN (SAVE)")
    typ, data = m.uid("FETCH", "$", "(UID)")
    t.ok(len(data) == 1 and b"UID 2" in data[0],
         "UID FETCH $ uses the saved result", data)
    typ, data = m._simple_command("UNSELECT")
    t.eq(typ, "OK", "UNSELECT")
    typ, data = m.unsubscribe("Junk")
    t.eq(typ, "OK", "UNSUBSCRIBE")
    typ, data = m.lsub('""', "*")
    t.ok(not any(b"Junk" in x for x in data), "LSUB no longer has Junk",
         data)
    typ, data = m.subscribe("Junk")
    typ, data = m.lsub('""', "*")
    t.ok(any(b"Junk" in x for x in data), "SUBSCRIBE brings it back", data)
    typ, data = m.select("INBOX", readonly=True)
    typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
    t.eq(typ, "NO", "STORE in an EXAMINEd mailbox: NO")
    m.logout()


D_RL = "rl@city.example"
d.user(D_RL, "rl-pw")

for fn in (case_sort_thread, case_condstore_qresync, case_utf8_accept,
           case_deferred_expunge, case_rev2_binary, case_quota,
           case_searchres_misc, case_tls_login, case_starttls, case_bad_password,
           case_authenticate, case_list, case_fetch, case_store_search,
           case_copy_move_append_expunge, case_two_sessions_idle,
           case_enable_condstore, case_rate_limit):
    t.run_case(fn)
d.stop()
t.done()
