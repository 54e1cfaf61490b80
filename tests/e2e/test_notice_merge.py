#!/usr/bin/env python3
"""test_notice_merge.py - govmail-notice merge: 200 personalised bills from
a GB18030 CSV (quoted fields, an embedded line break) and a UTF-8 template,
each signed, submitted over 4 pipelined connections to the Python SMTP
server of test_notice_helpers.py; the report and its summary; a rerun
sends nothing; then resumability: the merge is killed with SIGKILL in the
middle of a run and run again - every row arrives, exactly once for each
row whose outcome was journaled before the kill, at most twice (with the
same Message-ID) for the rows in doubt, of which there are at most as
many as connections.

Skips itself until govmail-ca, govmailctl and govmail-notice are built.
"""
import csv
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Suite  # noqa: E402
import test_notice_helpers as nh  # noqa: E402

if not nh.built():
    print("1..0 # SKIP govmail-ca, govmailctl or govmail-notice not built")
    sys.exit(0)

ROWS = 200
CONNS = 4
REFUSED_ROW = 17

t = Suite()
pki = nh.Pki(t)
official, (off_p12, off_pw) = pki.official()
path = pki.path
with open(path("smtp.pass"), "w") as f:
    f.write("merge-pw\n")


def addr(i):
    return f"c{i:04d}@{nh.DOMAIN}"


rows = []
for i in range(1, ROWS + 1):
    note = "按时缴费" if i != 1 else '第一行, 含"引号"\n和换行'
    rows.append([f"市民{i}", addr(i), f"{i * 1.25:.2f}", note])
with open(path("bills.csv"), "wb") as f:
    w = ["姓名,email,amount,note"]
    for r in rows:
        w.append(",".join('"' + c.replace('"', '""') + '"' if
                          any(x in c for x in ',"\n') else c for c in r))
    f.write(("\r\n".join(w) + "\r\n").encode("gb18030"))
with open(path("bill.tmpl"), "w", encoding="utf-8") as f:
    f.write("From: 水务局 <" + official + ">\n"
            "To: {{姓名}} <{{email}}>\n"
            "Subject: {{姓名}}，您的十一月水费账单\n"
            "\n"
            "尊敬的{{姓名}}：\n"
            "您本月的水费为 {{ amount }} 元。\n"
            "备注：{{note}}\n")


def merge(srv, journal, report, *extra):
    return [nh.NOTICE, "merge", "--template", path("bill.tmpl"),
            "--csv", path("bills.csv"), "--p12", off_p12,
            "--p12-pass-file", off_pw, "--journal", path(journal),
            "--report", path(report), "--connections", str(CONNS),
            "--server", f"localhost:{srv.port}", "--cafile", pki.root,
            "--user", official, "--password-file", path("smtp.pass")] + \
        list(extra)


def read_report(name):
    with open(path(name), newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    summary = lines[-1] if lines and lines[-1].startswith("# ") else ""
    body = [x for x in lines if not x.startswith("# ")]
    return list(csv.DictReader(body)), summary


def journal_rows(name):
    done, started = set(), set()
    with open(path(name)) as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split(" ")
            if parts[0] == "D":
                done.add(int(parts[1]))
            elif parts[0] == "S":
                started.add(int(parts[1]))
    return done, started - done


# ---- a whole run -----------------------------------------------------------
srv = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "merge-pw",
                  refuse={addr(REFUSED_ROW)})
p = t.run(merge(srv, "j1", "r1.csv"), timeout=300)
t.eq(p.returncode, 2, "merge with one refused row: exit 2 (partial)")
t.ok("progress done=200 total=200" in p.stderr,
     "plain progress lines when not on a terminal", p.stderr[-2000:])
ids = srv.message_ids()
t.eq(len(ids), ROWS - 1, "199 messages accepted")
t.eq(len(set(ids)), ROWS - 1, "199 distinct Message-IDs")
t.ok(all(m is not None and m.startswith("<notice.") for m in ids),
     "deterministic Message-IDs <notice.JOURNAL.ROW@domain>", ids[:3])
rep, summary = read_report("r1.csv")
t.eq(len(rep), ROWS, "the report has one line per row")
st = {}
for r in rep:
    st[r["status"]] = st.get(r["status"], 0) + 1
t.eq(st, {"sent-signed": ROWS - 1, "failed": 1}, "report statuses")
bad = [r for r in rep if r["status"] == "failed"]
t.ok(bad and bad[0]["row"] == str(REFUSED_ROW) and
     bad[0]["address"] == addr(REFUSED_ROW) and "550" in bad[0]["error"],
     "the refused row is reported with the server's 550", bad)
t.ok("rows=200 sent=199" in summary and "failed=1" in summary,
     "summary line", summary)
t.ok(p.stdout.startswith("summary rows=200 sent=199"),
     "summary on stdout", p.stdout)
by_rcpt = {m[1][0]: m for m in srv.messages}
t.eq(sorted(by_rcpt), sorted(addr(i) for i in range(1, ROWS + 1)
                             if i != REFUSED_ROW),
     "one message per recipient, envelope from the To: column")
for i in (1, 2, 150):
    raw = by_rcpt[addr(i)][2]
    content = nh.verify_signed(t, raw, pki.root, pki.dir, f"m{i}")
    t.ok(content is not None, f"row {i}: openssl cms -verify -purpose "
         "smimesign")
    hdr = nh.parse(raw)
    t.eq(str(hdr["Subject"]), f"市民{i}，您的十一月水费账单",
         f"row {i}: personalised RFC 2047 subject")
    t.eq(hdr["To"].addresses[0].display_name, f"市民{i}",
         f"row {i}: personalised To: name")
    if content is not None:
        txt = nh.text_of(content)
        t.ok(f"尊敬的市民{i}：" in txt and f"{i * 1.25:.2f} 元" in txt,
             f"row {i}: personalised body", txt)
        if i == 1:
            t.ok('第一行, 含"引号"\n和换行' in txt.replace("\r\n", "\n"),
                 "quoted CSV field with comma, quote and line break", txt)

p2 = t.run(merge(srv, "j1", "r1b.csv"), timeout=120)
t.eq(len(srv.message_ids()), ROWS - 1, "run again: nothing sent twice")
rep2, summary2 = read_report("r1b.csv")
t.eq((p2.returncode, summary2), (2, summary),
     "run again: same report summary")
with open(path("bills.csv"), "rb") as f:
    head = f.read().split(b"\r\n")
with open(path("other.csv"), "wb") as f:
    f.write(b"\r\n".join(head[:1] + head[5:9]) + b"\r\n")
p3 = t.run([nh.NOTICE, "merge", "--template", path("bill.tmpl"),
            "--csv", path("other.csv"), "--p12", off_p12,
            "--p12-pass-file", off_pw, "--journal", path("j1"),
            "--report", path("x.csv"), "--tls", "none",
            "--server", f"127.0.0.1:{srv.port}"])
t.ok(p3.returncode == 1 and "another CSV" in p3.stderr,
     "a different input with the same journal: refused", p3.stderr)
srv.stop()

# ---- killed in the middle, run again ------------------------------------
srv2 = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "merge-pw",
                   refuse={addr(REFUSED_ROW)}, delay=0.02)
proc = t.spawn(merge(srv2, "j2", "r2.csv"), stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL)
end = time.time() + 60
while len(srv2.messages) < 60 and time.time() < end and \
        proc.poll() is None:
    time.sleep(0.01)
os.kill(proc.pid, signal.SIGKILL)
proc.wait()
killed_at = len(srv2.messages)
t.ok(60 <= killed_at < ROWS - 1, f"killed mid-run ({killed_at} received)")
time.sleep(1.0)
settled = len(srv2.messages)
time.sleep(0.5)
t.eq(len(srv2.messages), settled, "the sending processes died with it")
done_before, doubt_before = journal_rows("j2")
t.ok(len(doubt_before) <= CONNS, "at most one row in doubt per connection",
     sorted(doubt_before))
p = t.run(merge(srv2, "j2", "r2.csv"), timeout=300)
t.eq(p.returncode, 2, "rerun completes (exit 2: the refused row)")
count = {}
for m in srv2.message_ids():
    count[m] = count.get(m, 0) + 1
rep, summary = read_report("r2.csv")
row_mid = {int(r["row"]): r["message-id"] for r in rep}
sent_rows = [i for i in range(1, ROWS + 1) if i != REFUSED_ROW]
t.ok(all(count.get(row_mid[i], 0) >= 1 for i in sent_rows),
     "every row arrived")
once = [i for i in sent_rows if i in done_before]
t.ok(once and all(count[row_mid[i]] == 1 for i in once),
     f"exactly once for the {len(once)} rows journaled before the kill")
twice = [i for i in sent_rows if count[row_mid[i]] > 1]
t.ok(set(twice) <= doubt_before and
     all(count[row_mid[i]] == 2 for i in twice),
     "duplicates only among rows in doubt, at most twice, same Message-ID",
     (twice, sorted(doubt_before)))
t.ok(all(count.get(row_mid[i], 0) == 1 for i in sent_rows
         if i not in doubt_before),
     "every row not in doubt arrived exactly once")
t.ok("rows=200 sent=199" in summary and "failed=1" in summary and
     "in_doubt=0" in summary and "not_sent=0" in summary,
     "final summary after the resume", summary)
resent = [r for r in rep if "sent again" in r["error"]]
t.eq(sorted(int(r["row"]) for r in resent),
     sorted(doubt_before - {REFUSED_ROW}),
     "the report names the rows sent again after the interruption")
srv2.stop()

# ---- connections that break ------------------------------------------------
srv3 = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "merge-pw",
                   drop_once={addr(5)}, drop_always={addr(6)},
                   tempfail={addr(7): 2})
p = t.run(merge(srv3, "j3", "r3.csv", "--progress"), timeout=300)
t.eq(p.returncode, 2, "a row that cannot be sent: exit 2")
t.ok("\r[" in p.stderr and "msg/s ETA" in p.stderr and
     "200/200 100%" not in p.stderr and "199/200" in p.stderr,
     "--progress draws a bar with the rate and the time left",
     p.stderr[-300:])
rep, summary = read_report("r3.csv")
by_row = {int(r["row"]): r for r in rep}
ids = srv3.message_ids()
t.eq(ids.count(by_row[5]["message-id"]), 2,
     "answer lost after the message was taken: sent again on a new "
     "connection, same Message-ID")
t.ok(by_row[5]["status"] == "sent-signed" and
     "sent again" in by_row[5]["error"],
     "the report says row 5 may have arrived twice", by_row[5])
t.ok(by_row[6]["status"] == "deferred" and
     by_row[6]["message-id"] not in ids,
     "a connection that always breaks before the data: deferred, "
     "nothing taken", by_row[6])
t.ok(by_row[7]["status"] == "sent-signed" and
     ids.count(by_row[7]["message-id"]) == 1,
     "two 450 replies: waited, tried again, sent once", by_row[7])
t.eq(srv3.tempfail[addr(7)], 0, "... after both 450s")
t.ok("deferred=1" in summary and "sent=199" in summary, "summary", summary)
srv3.drop_always.clear()
p = t.run(merge(srv3, "j3", "r3.csv"), timeout=120)
rep, summary = read_report("r3.csv")
t.eq(p.returncode, 0, "run again: the deferred row is sent, exit 0")
t.eq(srv3.message_ids().count(
    {int(r["row"]): r for r in rep}[6]["message-id"]), 1,
    "the deferred row arrived once")
t.eq(len(set(srv3.message_ids())), ROWS, "all 200 rows arrived")
srv3.stop()

# ---- --journal-sync ---------------------------------------------------------
# batch (the default, used above) and each give the same outcome; the
# grouping itself is tested in tests/unit/test_notice.c.
srv4 = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "merge-pw",
                   refuse={addr(REFUSED_ROW)})
p = t.run(merge(srv4, "j4", "r4.csv", "--journal-sync", "each"),
          timeout=300)
rep, summary = read_report("r4.csv")
t.eq(p.returncode, 2, "--journal-sync each: exit 2 (the refused row)")
t.ok("rows=200 sent=199" in summary and "failed=1" in summary,
     "--journal-sync each: the same summary", summary)
t.eq(len(set(srv4.message_ids())), ROWS - 1, "... every row sent once")
with open(path("j4"), encoding="utf-8") as f:
    jl = f.read().splitlines()
t.eq(sum(1 for x in jl if x.startswith("D ")), ROWS,
     "the journal holds one outcome line per row")
p = t.run(merge(srv4, "j5", "r5.csv", "--journal-sync", "sometimes"))
t.ok(p.returncode == 1 and "--journal-sync" in p.stderr,
     "--journal-sync with another value: refused", p.stderr)
t.ok(not os.path.exists(path("j5")), "... before anything is written")
srv4.stop()

# ---- the default number of connections: two per core, 2 .. 16 -------------
srv5 = nh.FakeSMTP(path("tls.crt"), path("tls.key"), official, "merge-pw")
argv = merge(srv5, "j6", "r6.csv")
i = argv.index("--connections")
del argv[i:i + 2]
p = t.run(argv, timeout=300)
t.eq(p.returncode, 0, "without --connections: exit 0")
want = min(max(2 * os.sysconf("SC_NPROCESSORS_ONLN"), 2), 16)
t.eq(srv5.auth_attempts, want,
     f"... over {want} connections (two per core, 2 .. 16)")
t.eq(len(set(srv5.message_ids())), ROWS, "... every row sent once")
srv5.stop()
t.done()
