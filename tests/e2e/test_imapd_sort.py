#!/usr/bin/env python3
"""govmail-imapd SORT and THREAD: on a 5,120-message mailbox they run in
slices, so another session's NOOP is answered while the SORT is still
under way (ordering, not timing: the SORT's answer is not there yet when
the NOOP's arrives); the answers are right; THREAD=REFERENCES keeps a
placeholder for a missing parent and merges "Re: x" into "x" by subject
(RFC 5256), THREAD=ORDEREDSUBJECT groups by base subject."""
import select

from tap import Suite
from imapdenv import Imapd, Raw

t = Suite()
d = Imapd(t, plaintext_loopback=True)
A = "alice@city.example"
C = "carol@city.example"
d.ctl("domain", "add", "city.example")
d.user(A, "alice-pw")
d.user(C, "carol-pw")
BASE = 10
for i in range(BASE):
    d.deliver(A, (f"From: u{(7 * i) % BASE}@city.example\r\nTo: {A}\r\n"
                  f"Subject: s{(3 * i) % BASE}\r\n"
                  f"Date: Sat, 21 Nov 2026 10:{i:02d}:00 +0000\r\n"
                  f"Message-ID: <m{i}@x>\r\n\r\nbody {i}\r\n").encode())
# The thread mailbox: a missing parent, a subject merge, a side thread.
thread_mails = [
    # (message-id, references, subject, minute)
    ("<t1@x>", "", "Plan", 0),
    ("<t2@x>", "<t1@x>", "Re: Plan", 1),
    ("<t3@x>", "<gone@x>", "Re: Budget", 2),
    ("<t4@x>", "<gone@x>", "Re: Budget", 3),
    ("<t5@x>", "", "Re: Plan", 4),
    ("<t6@x>", "", "Other", 5),
]
for mid, refs, subj, minute in thread_mails:
    hdr = (f"From: x@city.example\r\nTo: {C}\r\nSubject: {subj}\r\n"
           f"Message-ID: {mid}\r\n"
           f"Date: Sat, 21 Nov 2026 11:{minute:02d}:00 +0000\r\n")
    if refs:
        hdr += f"References: {refs}\r\n"
    d.deliver(C, (hdr + "\r\nx\r\n").encode())
d.start()


def login(user, pw):
    r = Raw(d.imap, timeout=120)
    _, tag = r.cmd("l", f'LOGIN "{user}" "{pw}"')
    t.ok(tag.startswith("l OK"), f"login {user}", tag)
    return r


# -- fill the mailbox: COPY doubles it (references only, one transaction) -
a = login(A, "alice-pw")
a.cmd("s0", "SELECT INBOX")
n = BASE
for k in range(9):
    _, tag = a.cmd(f"c{k}", "COPY 1:* INBOX")
    if not tag.startswith(f"c{k} OK"):
        break
    n *= 2
lines, tag = a.cmd("s1", "SELECT INBOX")
t.ok(f"* {n} EXISTS" in lines and n == 5120, "5,120 messages in INBOX",
     lines[:3])

# Expected SORT (SUBJECT): copy j of base message i sits at seq i+1+j*BASE,
# subject s(3i mod 10); ties by UID (= sequence here).
subj_of = {}
for seq in range(1, n + 1):
    subj_of[seq] = (3 * ((seq - 1) % BASE)) % BASE
want = sorted(range(1, n + 1), key=lambda q: (subj_of[q], q))

# -- SORT while another session runs NOOPs --------------------------------
b = login(A, "alice-pw")
b.cmd("b0", "SELECT INBOX")
# Whether a NOOP sent right after the SORT is answered before it.  A
# worker that ran the SORT without yielding to its other connections
# answers the NOOP only after the SORT, every time.  The NOOP could lose
# the race to a very fast SORT on a loaded machine: three tries.
def noops_before(tag, command):
    a.send(f"{tag} {command}\r\n")
    first = 0
    for k in range(50):
        _, nt = b.cmd(f"{tag}n{k}", "NOOP")
        if not nt.startswith(f"{tag}n{k} OK"):
            break
        # Is the SORT's answer there already?  (Bytes written before the
        # NOOP's answer are in a's socket by now: loopback, no TLS.)
        ready, _, _ = select.select([a.s], [], [], 0)
        if ready:
            break
        first += 1
    return first


answered_first = 0
for attempt in range(3):
    answered_first = noops_before(f"p{attempt}", "SORT (FROM) UTF-8 ALL")
    lines, tag = a.until(f"p{attempt}")
    if answered_first > 0:
        break
t.ok(answered_first >= 1,
     "another session's NOOP answered before the SORT completed",
     f"{answered_first} NOOPs first")
a.send("srt SORT (SUBJECT) UTF-8 ALL\r\n")
lines, tag = a.until("srt")
t.ok(tag.startswith("srt OK"), "SORT completed", tag)
got = []
for ln in lines:
    if ln.startswith("* SORT"):
        got = [int(x) for x in ln.split()[2:]]
t.eq(len(got), n, "SORT answered every message")
t.ok(got == want, "SORT (SUBJECT) order: base subject, then sequence")

lines, tag = a.cmd("srt2", "SORT (REVERSE FROM) UTF-8 ALL")
t.ok(tag.startswith("srt2 OK"), "SORT (REVERSE FROM) completed", tag)
got = [int(x) for ln in lines if ln.startswith("* SORT")
       for x in ln.split()[2:]]
from_of = {q: (7 * ((q - 1) % BASE)) % BASE for q in range(1, n + 1)}
t.ok(got == sorted(range(1, n + 1), key=lambda q: (-from_of[q], q)),
     "SORT (REVERSE FROM): reversed by sender, then ascending")

nt = 0
for attempt in range(3):
    nt = noops_before(f"q{attempt}", "THREAD REFERENCES UTF-8 ALL")
    a.until(f"q{attempt}")
    if nt > 0:
        break
t.ok(nt >= 1, "a NOOP is answered before THREAD over 5,120 messages")
a.send("thr THREAD ORDEREDSUBJECT UTF-8 ALL\r\n")
lines, tag = a.until("thr")
t.ok(tag.startswith("thr OK"), "THREAD ORDEREDSUBJECT completed", tag)
th = [ln for ln in lines if ln.startswith("* THREAD ")]
t.eq(len(th), 1, "one THREAD answer")
t.eq(th[0].count("(") if th else 0, n,
     "ORDEREDSUBJECT: ten threads, every other message a child")
a.close()
b.close()

# -- THREAD over hand-made headers ---------------------------------------
c = login(C, "carol-pw")
c.cmd("s", "SELECT INBOX")
lines, tag = c.cmd("t1", "THREAD REFERENCES UTF-8 ALL")
th = [ln for ln in lines if ln.startswith("* THREAD ")]
t.eq(th[0] if th else None, "* THREAD (1 (2)(5))((3)(4))(6)",
     "REFERENCES: reply by header, reply by subject, placeholder root")
lines, tag = c.cmd("t2", "UID THREAD REFERENCES UTF-8 NOT SUBJECT Budget")
th = [ln for ln in lines if ln.startswith("* THREAD ")]
t.eq(th[0] if th else None, "* THREAD (1 (2)(5))(6)",
     "UID THREAD with a search program")
lines, tag = c.cmd("t3", "THREAD ORDEREDSUBJECT UTF-8 ALL")
th = [ln for ln in lines if ln.startswith("* THREAD ")]
t.eq(th[0] if th else None, "* THREAD (1 (2)(5))(3 4)(6)",
     "ORDEREDSUBJECT groups by base subject")
_, tag = c.cmd("t4", "THREAD NOSUCH UTF-8 ALL")
t.ok(tag.startswith("t4 BAD"), "an unknown algorithm: BAD")
_, tag = c.cmd("t5", "THREAD REFERENCES UTF-8 NOSUCHKEY")
t.ok(tag.startswith("t5 BAD"), "a bad search program: BAD")
_, tag = c.cmd("t6", "SORT (SUBJECT) KOI8-R ALL")
t.ok(tag.startswith("t6 NO [BADCHARSET"), "an unknown charset: NO")
c.close()
d.stop()
t.done()
