#!/usr/bin/env python3
"""govmail-imapd after ENABLE IMAP4rev2 (RFC 9051, Appendix E), each
difference from IMAP4rev1 checked side by side with a rev1 session: no
RECENT response, no \\Recent flag and no UNSEEN code on SELECT, which
sends a LIST response instead; SEARCH answers ESEARCH (with UID for UID
SEARCH); mailbox names in UTF-8 rather than modified UTF-7; STATUS
DELETED and SIZE; LIST with \\Subscribed and LIST-STATUS; the base
commands that were extensions (UNSELECT, MOVE, NAMESPACE, UIDPLUS, BINARY
with literal8 both ways, LITERAL-/+, IDLE) all work in a rev2 session."""
import base64
import re

from tap import Suite
from imapdenv import Imapd, Raw

t = Suite()
d = Imapd(t, plaintext_loopback=True)
A = "alice@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.deliver(A, b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nfirst\r\n")
body = base64.b64encode("公文 notice body".encode()).decode()
d.deliver(A, ("Subject: two\r\nMIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n"
              + body + "\r\n").encode())
d.start()


def session(rev2):
    r = Raw(d.imap, timeout=20)
    _, tag = r.cmd("l", f'LOGIN "{A}" "alice-pw"')
    t.ok(tag.startswith("l OK"), "login", tag)
    if rev2:
        lines, tag = r.cmd("e", "ENABLE IMAP4rev2")
        t.ok("* ENABLED IMAP4rev2" in lines and tag.startswith("e OK"),
             "ENABLE IMAP4rev2 answers ENABLED", lines)
    return r


caps, _ = Raw(d.imap).cmd("c", "CAPABILITY")
t.ok(any("IMAP4rev2" in c and "IMAP4rev1" in c for c in caps),
     "both revisions announced")

v1 = session(False)
v2 = session(True)

# -- SELECT ---------------------------------------------------------------
l1, tag1 = v1.cmd("s", "SELECT INBOX")
t.ok(tag1.startswith("s OK"), "rev1 SELECT")
t.ok(any(re.match(r"\* \d+ RECENT", x) for x in l1), "rev1: RECENT sent",
     l1)
t.ok(any("[UNSEEN " in x for x in l1), "rev1: OK [UNSEEN] sent", l1)
t.ok(not any(x.startswith("* LIST") for x in l1), "rev1: no LIST on SELECT")
d.deliver(A, b"Subject: three\r\n\r\nthird\r\n")
l2, tag2 = v2.cmd("s", "SELECT INBOX")
t.ok(tag2.startswith("s OK"), "rev2 SELECT")
t.ok(not any("RECENT" in x for x in l2), "rev2: no RECENT response", l2)
t.ok(not any("[UNSEEN " in x for x in l2), "rev2: no UNSEEN code", l2)
t.ok('* LIST () "/" "INBOX"' in l2, "rev2: SELECT sends a LIST response", l2)
t.ok("* 3 EXISTS" in l2, "rev2: EXISTS as usual")
lines, _ = v2.cmd("f", "FETCH 1:* (FLAGS)")
t.ok(not any("\\Recent" in x for x in lines), "rev2: no \\Recent flag",
     lines)
lines, _ = v1.cmd("n", "NOOP")
lines, _ = v1.cmd("f", "FETCH 3 (FLAGS)")
t.ok(any("\\Recent" in x for x in lines), "rev1: \\Recent on new mail",
     lines)

# -- SEARCH -----------------------------------------------------------------
lines, _ = v1.cmd("q", "SEARCH ALL")
t.ok("* SEARCH 1 2 3" in lines, "rev1: SEARCH response", lines)
lines, _ = v2.cmd("q", "SEARCH ALL")
t.ok('* ESEARCH (TAG "q") ALL 1:3' in lines, "rev2: ESEARCH response", lines)
lines, _ = v2.cmd("u", "UID SEARCH SUBJECT two")
t.ok('* ESEARCH (TAG "u") UID ALL 2' in lines,
     "rev2: UID SEARCH answers ESEARCH with UID", lines)
lines, _ = v2.cmd("z", "SEARCH SUBJECT nothing-matches")
t.ok('* ESEARCH (TAG "z")' in lines, "rev2: an empty ESEARCH", lines)

# -- mailbox names ------------------------------------------------------
_, tag = v2.cmd("m", 'CREATE "公文"')
t.ok(tag.startswith("m OK"), "rev2: CREATE with a UTF-8 name", tag)
lines, _ = v2.cmd("m2", 'LIST "" "公*"')
t.ok(any(x.endswith('"公文"') for x in lines),
     "rev2: LIST answers the name in UTF-8", lines)
lines, _ = v1.cmd("m3", 'LIST "" "&UWw-*"')
t.ok(any(x.endswith('"&UWxlhw-"') for x in lines),
     "rev1: the same mailbox in modified UTF-7", lines)
_, tag = v2.cmd("m4", 'CREATE "&UWxlhw-/sub"')
lines, _ = v2.cmd("m5", 'LIST "" "*"')
t.ok(any('"&UWxlhw-/sub"' in x for x in lines),
     "rev2: a name is taken as UTF-8, not decoded from modified UTF-7")

# -- STATUS and LIST extensions ------------------------------------------
v2.cmd("d", "STORE 1 +FLAGS (\\Deleted)")
lines, _ = v2.cmd("st", "STATUS INBOX (MESSAGES DELETED SIZE)")
t.ok(any("MESSAGES 3" in x and "DELETED 1" in x and
         re.search(r"SIZE \d+", x) for x in lines),
     "rev2: STATUS DELETED and SIZE", lines)
v2.cmd("sub", 'SUBSCRIBE "公文"')
lines, _ = v2.cmd("ls", 'LIST (SUBSCRIBED) "" "*"')
t.ok(any("\\Subscribed" in x and '"公文"' in x for x in lines),
     "rev2: LIST (SUBSCRIBED) with \\Subscribed", lines)
# RFC 5258 RECURSIVEMATCH: an unsubscribed parent of a subscribed child.
v2.cmd("rc", 'CREATE "Proj/Sub"')
v2.cmd("rs", 'SUBSCRIBE "Proj/Sub"')
v2.cmd("ru", 'UNSUBSCRIBE "Proj"')
lines, _ = v2.cmd("rm", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
t.ok(any(x.endswith('"/" "Proj" ("CHILDINFO" ("SUBSCRIBED"))') and
         "\\Subscribed" not in x for x in lines),
     "LIST (SUBSCRIBED RECURSIVEMATCH): CHILDINFO for the parent", lines)
t.ok(not any('"Proj/Sub"' in x for x in lines),
     "... and not the child, which '%' does not match")
lines, _ = v2.cmd("rn", 'LIST (SUBSCRIBED) "" "%"')
t.ok(not any('"Proj"' in x for x in lines),
     "LIST (SUBSCRIBED) alone skips the unsubscribed parent", lines)
_, tag = v2.cmd("rb", 'LIST (RECURSIVEMATCH) "" "%"')
t.ok(tag.startswith("rb BAD"), "RECURSIVEMATCH alone: BAD", tag)
lines, _ = v2.cmd("lst", 'LIST "" "INBOX" RETURN (STATUS (MESSAGES))')
t.ok(any(x.startswith('* STATUS "INBOX" (MESSAGES 3)') for x in lines),
     "rev2: LIST-STATUS", lines)
lines, _ = v2.cmd("ns", "NAMESPACE")
t.ok('* NAMESPACE (("" "/")) NIL NIL' in lines, "rev2: NAMESPACE", lines)

# -- base commands that were extensions -----------------------------------
lines, tag = v2.cmd("b", "FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1])")
t.ok(tag.startswith("b OK") and any("BINARY.SIZE[1] " in x for x in lines),
     "rev2: BINARY and BINARY.SIZE", lines)
want = "公文 notice body".encode()
t.ok(any(f"BINARY.SIZE[1] {len(want)}" in x for x in lines),
     "rev2: BINARY.SIZE is the decoded size", lines)
lines, tag = v2.cmd("mv", 'UID MOVE 3 "公文"')
t.ok(tag.startswith("mv OK") and any("COPYUID" in x for x in lines + [tag]),
     "rev2: MOVE with COPYUID", lines + [tag])
t.ok(any(re.match(r"\* \d+ EXPUNGE", x) for x in lines),
     "rev2: MOVE expunges from the source", lines)
v2.send(b"ap APPEND INBOX {12+}\r\nSubject: x\r\n\r\n")
_, tag = v2.until("ap")
t.ok(re.match(r"ap OK \[APPENDUID \d+ \d+\]", tag) is not None,
     "rev2: APPEND with a non-synchronising literal and APPENDUID", tag)
# BINARY: APPEND a message with NUL bytes as a literal8, read it back
# through FETCH BINARY as a literal8.
raw = (b"Subject: bin\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: application/octet-stream\r\n"
       b"Content-Transfer-Encoding: binary\r\n\r\n"
       b"\x00\x01\x02zero\x00end")
v2.send(b"a8 APPEND INBOX ~{%d}\r\n" % len(raw))
t.eq(v2.line(), "+ Ready for literal data", "rev2: APPEND literal8 gets +")
v2.send(raw + b"\r\n")
_, tag = v2.until("a8")
m8 = re.match(r"a8 OK \[APPENDUID \d+ (\d+)\]", tag)
t.ok(m8 is not None, "rev2: APPEND of binary content with literal8", tag)
v2.send(f"b8 UID FETCH {m8.group(1) if m8 else 0} (BINARY.PEEK[1])\r\n")
head = v2.line()
want8 = b"\x00\x01\x02zero\x00end"
got8 = v2.read(len(want8)) if head.endswith("~{%d}" % len(want8)) else b""
v2.until("b8")
t.eq(got8, want8, "rev2: FETCH BINARY answers the NUL bytes as literal8")
_, tag = v2.cmd("un", "UNSELECT")
t.ok(tag.startswith("un OK"), "rev2: UNSELECT")
_, tag = v2.cmd("ex", 'EXAMINE "公文"')
t.ok(tag.startswith("ex OK [READ-ONLY]"), "rev2: EXAMINE of a UTF-8 name")
v2.send("i IDLE\r\n")
t.ok(v2.line().startswith("+"), "rev2: IDLE")
v2.send("DONE\r\n")
_, tag = v2.until("i")
t.ok(tag.startswith("i OK"), "rev2: IDLE done")
v1.close()
v2.close()
d.stop()
t.done()
