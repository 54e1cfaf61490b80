#!/usr/bin/env bash
# run-notice.sh - the notice benchmarks of issue 6: one signed notice to a
# notice list of 100,000 citizens, and 10,000 personalised signed (then
# signed and encrypted) bills with `govmail-notice merge`, all through the
# real govmail-smtpd into its store, with the references measured in the
# same run.  Not a test.
#
#   bench/run-notice.sh [BUILD_DIR] [SCRATCH_DIR]
#
# BUILD_DIR defaults to the checkout; SCRATCH defaults to
# bench/out/notice-scratch (on the disk a real store would use: the
# figures include its fsyncs).  Must run as root (Postfix's master needs
# it); govmail-smtpd, govmail-ca serve and govmailctl run as `nobody`.
#
# What runs (each on its own free loopback port, all stopped by PID at the
# end, even on failure):
#   - govmail-smtpd (one worker per core) on a scratch store with the
#     citizen accounts u and 1u .. Nu (bench/smtp_accounts), an official
#     account with a PKCS#12 from a real `govmail-ca init` + `issue
#     --generate`, and the notice list all-citizens@ (--notice, members
#     class:citizen, the official as poster).  Submission with STARTTLS +
#     AUTH, as a department would send.
#   - govmail-ca serve (the /certs/ repository for --encrypt).
#   - the reference: a private Postfix delivering to a private Dovecot
#     over LMTP (bench/lib-peer.sh, as run-smtp.sh), and `openssl speed`.
#
# Figures:
#   1. the notice (govmail-notice send to the list): seconds from the
#      start of the submission to its end (the 250 comes once the fan-out
#      is durable; the store count is checked right after), and the growth
#      of the store's database files per recipient beyond the one copy.
#      Reference: the same message to NOTICE_BENCH_PEER recipients
#      (default 10,000) through Postfix + Dovecot, 1,000 RCPT per
#      transaction (Postfix's smtpd_recipient_limit), timed until the last
#      Maildir file is there and the queue is empty.
#   2. NOTICE_BENCH_BILLS (default 10,000) bills with `govmail-notice
#      merge`, signed, then signed and encrypted (certificates issued
#      beforehand with the CA's batch API through bench/ca_bench and
#      fetched from govmail-ca serve): bills/s from the start of the
#      command until it exits (every bill is then in its mailbox).
#      Reference: `openssl speed -seconds 3` for the official's key type,
#      signatures/s on one core.
# Environment: NOTICE_BENCH_KEY (the official's key type for
# `govmail-ca issue --key-type`: p256, the CA's default, p384, rsa2048 or
# rsa3072), NOTICE_BENCH_LIST (default 100000 citizens),
# NOTICE_BENCH_PEER (10000; 0 leaves Postfix + Dovecot out),
# NOTICE_BENCH_BILLS (10000), NOTICE_BENCH_CONNECTIONS (merge's default
# when empty), NOTICE_BENCH_KEEP=1 keeps the scratch folder.  Ends with
# `govmailctl check` of the whole store.
# Prints one line per figure and saves them in bench/out/notice-<date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
scratch=${2:-$here/out/notice-scratch}
smtpd="$build/smtpd/govmail-smtpd"
ctl="$build/tools/govmailctl"
notice="$build/tools/govmail-notice"
gca="$build/ca/govmail-ca"
accounts="$build/bench/smtp_accounts"
ca_bench="$build/bench/ca_bench"
n_list=${NOTICE_BENCH_LIST:-100000}
n_peer=${NOTICE_BENCH_PEER:-10000}
n_bills=${NOTICE_BENCH_BILLS:-10000}
conns=${NOTICE_BENCH_CONNECTIONS:-}
peer_batch=1000
domain=bench.example
official="water@$domain"
list="all-citizens@$domain"
wait_max=600
for p in "$smtpd" "$ctl" "$notice" "$gca" "$accounts" "$ca_bench"; do
	[ -x "$p" ] || { echo "run-notice.sh: $p not built (make first)" >&2; exit 2; }
done
if [ "$(id -u)" -ne 0 ]; then
	echo "run-notice.sh: must run as root (Postfix's master needs it)" >&2
	exit 2
fi
if [ "$n_bills" -gt "$n_list" ] || [ "$n_peer" -gt "$n_list" ]; then
	echo "run-notice.sh: NOTICE_BENCH_BILLS and _PEER must not exceed NOTICE_BENCH_LIST" >&2
	exit 2
fi
. "$here/lib-peer.sh"
[ "$n_peer" -gt 0 ] && peer_install

out="$here/out/notice-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
chmod 755 "$scratch"
if ! as_nobody test -x "$scratch"; then
	echo "run-notice.sh: nobody cannot reach $scratch; give a SCRATCH_DIR under a world-searchable folder" >&2
	exit 2
fi
gm_port=$(free_port)
sub_port=$(free_port)
pki_port=$(free_port)
pf_port=$(free_port)
dv_port=$(free_port)
if [ "$(printf '%s\n' "$gm_port" "$sub_port" "$pki_port" "$pf_port" "$dv_port" | sort -u | wc -l)" -ne 5 ]; then
	echo "run-notice.sh: free_port gave the same port twice; run again" >&2
	exit 1
fi

gm="$scratch/govmail"
gm_pid= pki_pid=
cleanup() {
	set +e
	[ -n "$gm_pid" ] && { stop_pid "$gm_pid"; wait "$gm_pid" 2>/dev/null; }
	[ -n "$pki_pid" ] && { stop_pid "$pki_pid"; wait "$pki_pid" 2>/dev/null; }
	peer_stop
	return 0
}
trap cleanup EXIT
exec > >(tee "$out") 2>&1

echo "# notice benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}'), $(openssl version | cut -d' ' -f1-2)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores)"

# ---- govmail: store, accounts, CA, list ------------------------------
mkdir -p "$gm"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$gm/key.pem" -out "$gm/cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost 2>/dev/null
echo "notice bench CA passphrase" > "$gm/capass"
chmod 600 "$gm/capass" "$gm/key.pem"
gm_conf_store > "$gm/govmail.conf"
cat >> "$gm/govmail.conf" <<EOF
[smtpd]
hostname = gm.$domain
listen_smtp = 127.0.0.1:$gm_port
listen_submission = 127.0.0.1:$sub_port
listen_submissions =
pid_file = smtpd.pid
rate_messages = 0
rate_ip_messages = 0
notice_ca_file = ca/root.crt
notice_crl_file = ca/issuing.crl
[tls]
cert_file = cert.pem
key_file = key.pem
[ca]
dir = ca
base_url = http://127.0.0.1:$pki_port
passphrase_file = capass
EOF
chown -R nobody:nogroup "$gm"
gmctl() { (cd "$gm" && as_nobody "$ctl" -c govmail.conf "$@"); }
t0=$(clock)
(cd "$gm" && as_nobody "$accounts" govmail.conf "$domain" "$n_list")
awk -v t0="$t0" -v t1="$(clock)" -v n="$n_list" 'BEGIN { printf "# govmail: %d citizen accounts created in %.1f s (bench/smtp_accounts)\n", n + 1, t1 - t0 }'
echo "official-pw" | gmctl user add "$official" --class official \
    --name "Water Bureau" --org "Water Bureau" >/dev/null
(cd "$gm" && as_nobody "$gca" -c govmail.conf init) > "$gm/ca-init.log"
(cd "$gm" && as_nobody "$gca" -c govmail.conf issue --profile official \
    "$official" --generate --p12 water.p12 \
    --key-type "${NOTICE_BENCH_KEY:-p256}") > "$gm/ca-issue.log"
awk '$1 == "password" { print $2 }' "$gm/ca-issue.log" > "$gm/water.pass"
echo "official-pw" > "$gm/smtp.pass"
chown nobody:nogroup "$gm/water.pass" "$gm/smtp.pass"
keytype=$(openssl pkcs12 -in "$gm/water.p12" -passin "file:$gm/water.pass" \
    -nokeys -clcerts 2>/dev/null | openssl x509 -noout -text |
    awk '/Public Key Algorithm/ { alg = $NF } /NIST CURVE/ { curve = $NF }
	/Public-Key:/ { bits = $2 } END { gsub(/[()]/, "", bits);
	print (alg == "id-ecPublicKey" ? "ec-" curve : "rsa-" bits) }')
case $keytype in
ec-P-256) speed_alg=ecdsap256 ;;
ec-P-384) speed_alg=ecdsap384 ;;
rsa-2048) speed_alg=rsa2048 ;;
rsa-3072) speed_alg=rsa3072 ;;
*) echo "run-notice.sh: unexpected official key type $keytype" >&2; exit 1 ;;
esac
echo "# the official's certificate (govmail-ca issue --profile official --generate): $keytype"
gmctl list add "$list" --notice >/dev/null
gmctl list member add "$list" "class:citizen@$domain" >/dev/null
gmctl list poster add "$list" "$official" >/dev/null

gm_smtpd_start "$gm" "$smtpd" "$gm_port" "$sub_port"
echo "# govmail-smtpd: $(nproc) workers, submission with STARTTLS + AUTH PLAIN (P-256 server certificate)"
gm_count() { gmctl stats | awk '/^messages:/ { print $2 }'; }
tck=$(getconf CLK_TCK)
smtpd_ticks() {	# CPU (user + system) of govmail-smtpd and its workers
	local p
	for p in "$gm_pid" $(ps -o pid= --ppid "$gm_pid"); do
		awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
	done | awk '{ s += $1 } END { print s + 0 }'
}
db_bytes() {	# the store's database files (logs and regions left out)
	find "$gm/store" -name '*.db' -type f -printf '%s\n' |
	    awk '{ s += $1 } END { print s + 0 }'
}
server=(--server "localhost:$sub_port" --tls starttls --cafile "$gm/cert.pem"
    --user "$official" --password-file "$gm/smtp.pass")
p12=(--p12 "$gm/water.p12" --p12-pass-file "$gm/water.pass")

# ---- 1. one signed notice to the list --------------------------------
cat > "$gm/notice.txt" <<'EOF'
各位市民：

因供水管网改造，本市部分区域将于下周二上午8时至下午6时暂停供水。
请提前做好储水准备。给您带来不便，敬请谅解。

Dear citizens: because of work on the water mains, parts of the city
will have no water next Tuesday from 8:00 to 18:00.  Please store water
beforehand.  We apologise for the inconvenience.

市水务局
EOF
members=$((n_list + 1))		# u and 1u .. Nu
echo "## 1. one signed notice to $members citizens (notice list, class:citizen)"
before_count=$(gm_count)
before_bytes=$(db_bytes)
c0=$(smtpd_ticks)
t0=$(clock)
if ! "$notice" send --from "市水务局 <$official>" --to "$list" \
    --subject "停水通知 / Water supply interruption" --body "$gm/notice.txt" \
    "${p12[@]}" "${server[@]}" --output "$gm/notice.eml" > "$gm/send.log" 2>&1; then
	echo "govmail-notice send failed:" >&2; cat "$gm/send.log" >&2
	tail -20 "$gm/smtpd.log" >&2; exit 1
fi
t1=$(clock)
c1=$(smtpd_ticks)
after_count=$(gm_count)
after_bytes=$(db_bytes)
msg_bytes=$(stat -c %s "$gm/notice.eml")
if [ $((after_count - before_count)) -ne "$members" ]; then
	echo "the store holds $((after_count - before_count)) new messages after the 250, $members expected" >&2
	exit 1
fi
gm_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
awk -v n="$members" -v t="$gm_t" -v b0="$before_bytes" -v b1="$after_bytes" \
    -v m="$msg_bytes" -v cpu="$(( (c1 - c0) ))" -v tck="$tck" 'BEGIN {
	cpu /= tck
	printf "govmail: %.2f s from submission start to the 250 (%.0f recipients/s); all %d in the store when it came\n", t, n / t, n
	printf "# govmail-smtpd used %.2f s of CPU for it\n", cpu
	printf "store growth: %.1f MB for %d recipients = %.1f B per recipient beyond the one %d-byte copy\n",
	    (b1 - b0) / 1e6, n, (b1 - b0 - m) / n, m }'

if [ "$n_peer" -gt 0 ]; then
	peer_start "$scratch" "$domain" "$n_peer" "$pf_port" "$dv_port"
	peer_describe
	# The same bytes as govmail stored, 1,000 RCPT per transaction,
	# one session, pipelined (Postfix offers PIPELINING).
	t0=$(clock)
	python3 - "$pf_port" "$gm/notice.eml" "$n_peer" "$peer_batch" \
	    "$domain" "$official" <<'EOF'
import socket, sys
port, path, n, batch, domain, sender = (int(sys.argv[1]), sys.argv[2],
    int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
msg = open(path, "rb").read()
msg = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                   for ln in msg.split(b"\r\n"))
s = socket.create_connection(("127.0.0.1", port), 60)
f = s.makefile("rb")
def reply():
    while True:
        ln = f.readline()
        if len(ln) < 4 or ln[3:4] != b"-":
            return ln
def expect(ln, code):
    if not ln.startswith(code):
        sys.exit("postfix said %r" % ln)
expect(reply(), b"220")
s.sendall(b"EHLO bench\r\n"); expect(reply(), b"250")
for first in range(1, n + 1, batch):
    rc = range(first, min(n + 1, first + batch))
    cmds = [b"MAIL FROM:<%s>\r\n" % sender.encode()]
    cmds += [b"RCPT TO:<%du@%s>\r\n" % (i, domain.encode()) for i in rc]
    s.sendall(b"".join(cmds) + b"DATA\r\n")
    for _ in range(len(cmds)):
        expect(reply(), b"250")
    expect(reply(), b"354")
    s.sendall(msg + (b"" if msg.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    expect(reply(), b"250")
s.sendall(b"QUIT\r\n")
EOF
	deadline=$(( $(date +%s) + wait_max ))
	while :; do
		t1=$(clock)
		q=$(pf_queued); have=$(dv_count)
		[ "$q" -eq 0 ] && [ "$have" -ge "$n_peer" ] && break
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "postfix: only $have of $n_peer delivered after ${wait_max}s" >&2
			tail -20 "$peer_pf/maillog" >&2; exit 1
		fi
		sleep 0.05
	done
	[ "$have" -eq "$n_peer" ] || { echo "postfix: $have delivered, $n_peer expected" >&2; exit 1; }
	pf_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	dv_kb=$(du -sk "$peer_maildirs" | cut -f1)
	awk -v n="$n_peer" -v t="$pf_t" -v g="$gm_t" -v gn="$members" -v kb="$dv_kb" 'BEGIN {
		printf "reference: Postfix + Dovecot %.2f s for %d recipients (%.0f recipients/s; %.1f MB of Maildirs); govmail per recipient %.0fx faster\n",
		    t, n, n / t, kb / 1024, (gn / g) / (n / t) }'
	peer_stop
fi

# ---- 2. personalised bills --------------------------------------------
echo "## 2. $n_bills personalised bills with govmail-notice merge"
python3 - "$gm/bills.csv" "$n_bills" "$domain" <<'EOF'
import sys
path, n, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w", encoding="utf-8") as f:
    f.write("name,email,account,amount,due\n")
    for i in range(1, n + 1):
        f.write(f"市民{i},{i}u@{domain},W{i:08d},{(i * 37) % 500 + 20}.{i % 100:02d},2026-12-15\n")
EOF
cat > "$gm/bill.tmpl" <<EOF
From: 市水务局 <$official>
To: {{name}} <{{email}}>
Subject: {{name}}，您的11月水费账单 / Your water bill

{{name}}，您好：

您的户号 {{account}} 本期（2026年11月）应缴水费 {{amount}} 元，
请于 {{due}} 前缴纳。

Account {{account}}: {{amount}} CNY due by {{due}}.

市水务局
EOF
chown nobody:nogroup "$gm/bills.csv" "$gm/bill.tmpl"
conn_opt=()
[ -n "$conns" ] && conn_opt=(--connections "$conns")
merge() {	# merge NAME [--encrypt ...]: sets merge_t (seconds)
	local name=$1 t0 t1 before after c0 c1
	shift
	before=$(gm_count)
	c0=$(smtpd_ticks)
	times > "$gm/$name.times0"	# this shell's children so far
	t0=$(clock)
	if ! "$notice" merge --template "$gm/bill.tmpl" --csv "$gm/bills.csv" \
	    "${p12[@]}" "${server[@]}" "${conn_opt[@]}" --no-progress \
	    --journal "$gm/$name.journal" --report "$gm/$name.report" "$@" \
	    > "$gm/$name.log" 2>&1; then
		echo "govmail-notice merge ($name) failed:" >&2
		tail -5 "$gm/$name.log" >&2; tail -20 "$gm/smtpd.log" >&2; exit 1
	fi
	t1=$(clock)
	times > "$gm/$name.times1"
	c1=$(smtpd_ticks)
	after=$(gm_count)
	if [ $((after - before)) -ne "$n_bills" ]; then
		echo "merge ($name): $((after - before)) new messages in the store, $n_bills expected" >&2
		exit 1
	fi
	merge_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	echo "# $name: $(grep '^summary' "$gm/$name.log")"
	# `times`: line 2 is the children's user and system time (XmY.ZZZs).
	awk -v c="$((c1 - c0))" -v tck="$tck" -v n="$n_bills" -v name="$name" '
		function sec(x) { split(x, a, /[ms]/); return a[1] * 60 + a[2] }
		FNR == 2 { t[FILENAME] = sec($1) + sec($2) }
		END { printf "# %s: CPU per bill: govmail-smtpd %.2f ms, govmail-notice %.2f ms (all its processes)\n",
		    name, c / tck * 1000 / n, (t[ARGV[2]] - t[ARGV[1]]) * 1000 / n }' \
	    "$gm/$name.times0" "$gm/$name.times1"
}
merge signed
signed_t=$merge_t

# Citizen certificates for --encrypt, issued before the clock starts.
addrs=()
for i in $(seq 1 "$n_bills"); do addrs+=("${i}u@$domain"); done
(cd "$gm" && as_nobody "$ca_bench" -c govmail.conf issue csr-batch \
    "$n_bills" 2 "${addrs[@]}") | sed 's/^/# ca_bench: /'
(cd "$gm" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$gca" -c govmail.conf serve --listen "127.0.0.1:$pki_port" \
    2> pki.log) &
pki_pid=$!
wait_port "$pki_port"
merge encrypted --encrypt --pki-url "http://127.0.0.1:$pki_port"
enc_t=$merge_t
stop_pid "$pki_pid"; wait "$pki_pid" 2>/dev/null || true; pki_pid=

# The last bill of each kind as stored: signed, and encrypted.
last=$(gmctl ls "${n_bills}u@$domain" | tail -1 | cut -f1)
prev=$(gmctl ls "${n_bills}u@$domain" | tail -2 | head -1 | cut -f1)
gmctl cat "${n_bills}u@$domain" INBOX "$prev" > "$gm/bill-signed.eml"
gmctl cat "${n_bills}u@$domain" INBOX "$last" > "$gm/bill-enc.eml"
if ! openssl cms -verify -purpose smimesign -CAfile "$gm/ca/root.crt" \
    -in "$gm/bill-signed.eml" -out /dev/null 2>"$gm/verify.log"; then
	echo "a stored bill does not verify:" >&2; cat "$gm/verify.log" >&2; exit 1
fi
grep -qi 'application/pkcs7-mime' "$gm/bill-enc.eml" ||
    { echo "the last bill is not encrypted" >&2; exit 1; }

echo "## reference: openssl speed -seconds 3 $speed_alg (one core)"
speed=$(openssl speed -seconds 3 "$speed_alg" 2>/dev/null |
    awk '/ bits / && $NF ~ /^[0-9.]+$/ { print $(NF - 1); exit }')
[ -n "$speed" ] || { echo "cannot read openssl speed's output" >&2; exit 1; }
awk -v n="$n_bills" -v s="$signed_t" -v e="$enc_t" -v sp="$speed" -v alg="$speed_alg" 'BEGIN {
	printf "openssl speed %s: %.0f sign/s on one core\n", alg, sp
	printf "signed bills: %.0f/s (%d in %.2f s): %.1fx below the raw signing rate (target: within 2x)\n", n / s, n, s, sp / (n / s)
	printf "signed + encrypted bills: %.0f/s (%d in %.2f s): %.1fx below the raw signing rate\n", n / e, n, e, sp / (n / e) }'
echo "# merge connections: ${conns:-the default}; errors logged by govmail-smtpd: $(grep -ciE 'error|fatal|warn' "$gm/smtpd.log" || true)"
grep -iE 'error|fatal|warn' "$gm/smtpd.log" | head -3 | sed 's/^/#   /' || true
# Spot checks: three mailboxes of the list hold the notice exactly once
# (and nothing else but their bills); then the whole store is checked.
miss=0
for i in 1 $((n_list / 2)) "$n_list"; do
	c=$(gmctl ls "${i}u@$domain" | grep -c 'Water supply interruption' || true)
	if [ "$c" -ne 1 ]; then
		echo "mailbox ${i}u holds the notice $c times (1 expected)" >&2
		miss=1
	fi
done
[ "$miss" -eq 0 ] || exit 1
echo "# spot check: 1u, $((n_list / 2))u and ${n_list}u hold the notice once each"
gm_check "$gm" "$ctl"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup
gm_pid=
trap - EXIT
[ "${NOTICE_BENCH_KEEP:-0}" = 1 ] || rm -rf "$scratch"
echo "# saved in $out"
