#!/usr/bin/env bash
# run-smtp.sh - the SMTP benchmark of issue 4: govmail-smtpd delivering
# into its store, side by side in the same run with Postfix delivering to
# Dovecot over LMTP, both durable, both driven by Postfix's smtp-source.
# Not a test.
#
#   bench/run-smtp.sh [BUILD_DIR] [SCRATCH_DIR]
#
# BUILD_DIR defaults to the checkout (quickstart builds in place); SCRATCH
# defaults to bench/out/smtp-scratch (on the disk a real store would use:
# the figures include its fsyncs).  Must run as root: Postfix's master
# needs it (it drops to the postfix user); govmail-smtpd runs as `nobody`
# in development mode, the same code path as production.
#
# What runs (each on its own free loopback port, all stopped by PID at the
# end, even on failure):
#   - govmail-smtpd (workers = one per core) on a scratch store whose
#     accounts bench/smtp_accounts creates; the 250 after DATA is sent
#     only once the delivery is committed (fsync).
#   - a private Postfix instance (`postfix -c DIR`: its own main.cf,
#     master.cf, queue_directory, data_directory; no chroot; otherwise
#     Postfix's defaults) with virtual_mailbox_domains = the bench domain
#     and virtual_transport = lmtp:inet:127.0.0.1:PORT.  Postfix fsyncs
#     its queue file before its 250.
#   - a private Dovecot (`dovecot -c FILE -F`: base_dir, state_dir, log
#     and Maildirs under the scratch folder; a static userdb for every
#     user of the domain, as nobody) with an LMTP listener on loopback and
#     mail_fsync = always, so the LMTP 250 comes after the Maildir file is
#     fsync'd.  The system's Postfix and Dovecot (if any) are not touched.
# The packages postfix, dovecot-core and dovecot-lmtpd are installed when
# missing (postfix with debconf's "No configuration", no service started).
#
# After an untimed warm-up (500 messages of 10 KB to each), figures
# (messages per second, counted from the first connection until
# the LAST message is in its mailbox: `govmailctl stats` for govmail; for
# Postfix the queue empty AND the Maildir files all there):
#   1. 1 KB, 10 KB and 100 KB messages with 1 and 10 sessions
#      (smtp-source -d: sessions stay connected), N messages each
#      (SMTP_BENCH_N, default 2000; half as many for 100 KB), each case
#      in R interleaved rounds (SMTP_BENCH_ROUNDS, default 3: govmail,
#      Postfix, govmail, Postfix, ...); the line gives each side's median
#      rate, their ratio, and the ratio of every round;
#   2. one 10 KB message to 10,000 distinct recipients, 1,000 RCPT per
#      transaction (smtp-source -N -r 1000 -m 10: recipients 1u .. 10000u),
#      time until all 10,000 mailboxes hold it;
#   3. for information, not a target: 100 KB that does not compress (a
#      base64 attachment, smtp-source -F), 1 and 10 sessions, since
#      smtp-source's own body compresses about 640 times (R rounds too).
# Prints one line per figure and saves them in bench/out/smtp-<date>.txt.
# About 6 minutes on 2 cores (the 10,000-recipient case takes Postfix +
# Dovecot most of a minute).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
scratch=${2:-$here/out/smtp-scratch}
smtpd="$build/smtpd/govmail-smtpd"
ctl="$build/tools/govmailctl"
accounts="$build/bench/smtp_accounts"
fs="$build/bench/fsync_rate"
n_msgs=${SMTP_BENCH_N:-2000}
rounds=${SMTP_BENCH_ROUNDS:-3}
warmup=500
domain=bench.example
fanout=10000
fanout_batch=1000
wait_max=300
for p in "$smtpd" "$ctl" "$accounts" "$fs"; do
	[ -x "$p" ] || { echo "run-smtp.sh: $p not built (make first)" >&2; exit 2; }
done
if [ "$(id -u)" -ne 0 ]; then
	echo "run-smtp.sh: must run as root (Postfix's master needs it)" >&2
	exit 2
fi

. "$here/lib-peer.sh"
peer_install

out="$here/out/smtp-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
chmod 755 "$scratch"
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$scratch"; then
	echo "run-smtp.sh: nobody cannot reach $scratch; give a SCRATCH_DIR under a world-searchable folder" >&2
	exit 2
fi
gm_port=$(free_port)
pf_port=$(free_port)
dv_port=$(free_port)
while [ "$pf_port" = "$gm_port" ] || [ "$dv_port" = "$gm_port" ] ||
    [ "$dv_port" = "$pf_port" ]; do
	pf_port=$(free_port); dv_port=$(free_port)
done

gm="$scratch/govmail"
gm_pid=
cleanup() {
	set +e
	if [ -n "$gm_pid" ]; then
		stop_pid "$gm_pid"; wait "$gm_pid" 2>/dev/null
	fi
	peer_stop
	return 0
}
trap cleanup EXIT
exec > >(tee "$out") 2>&1

echo "# SMTP benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}')"
echo "# govmail-smtpd vs Postfix $(postconf -d -h mail_version) + Dovecot $(dovecot --version | cut -d' ' -f1) (LMTP), load generator smtp-source"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores)"
echo "## physical reference: fdatasync rate of the disk under $scratch"
"$fs" "$scratch" 3 1

# ---- govmail ---------------------------------------------------------
mkdir -p "$gm"
gm_conf_store > "$gm/govmail.conf"
cat >> "$gm/govmail.conf" <<EOF
[smtpd]
hostname = gm.$domain
listen_smtp = 127.0.0.1:$gm_port
listen_submission =
listen_submissions =
pid_file = smtpd.pid
rate_messages = 0
rate_ip_messages = 0
EOF
chown -R nobody:nogroup "$gm"
t0=$(clock)
(cd "$gm" && as_nobody "$accounts" govmail.conf "$domain" "$fanout")
awk -v t0="$t0" -v t1="$(clock)" -v n="$fanout" 'BEGIN { printf "# govmail: %d accounts created in %.1f s\n", n + 1, t1 - t0 }'
gm_smtpd_start "$gm" "$smtpd" "$gm_port"
gm_count() {
	(cd "$gm" && as_nobody "$ctl" -c govmail.conf stats) |
	    awk '/^messages:/ { print $2 }'
}

# ---- Postfix + Dovecot (bench/lib-peer.sh) ---------------------------
peer_start "$scratch" "$domain" "$fanout" "$pf_port" "$dv_port"
pf=$peer_pf dv=$peer_dv maildirs=$peer_maildirs
peer_describe

# ---- the measurements ------------------------------------------------
gm_expected=$(gm_count)
dv_expected=0
result=

# until_done WHAT EXPECTED T0: waits until WHAT's mailboxes hold
# EXPECTED messages (and, for Postfix, its queue is empty); sets `result`
# to the seconds from T0 to the start of the check that found it done.
until_done() {
	local what=$1 want=$2 t0=$3 t have q=0
	local deadline=$(( $(date +%s) + wait_max ))
	while :; do
		t=$(clock)
		if [ "$what" = govmail ]; then
			have=$(gm_count)
		else
			q=$(pf_queued)
			have=$(dv_count)
		fi
		if [ "$q" -eq 0 ] && [ "$have" -ge "$want" ]; then
			break
		fi
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "$what: only $have of $want messages delivered after ${wait_max}s ($q still queued)" >&2
			[ "$what" = govmail ] && tail -20 "$gm/smtpd.log" >&2
			[ "$what" = postfix ] && tail -20 "$pf/maillog" >&2
			exit 1
		fi
		sleep 0.05
	done
	if [ "$have" -ne "$want" ]; then
		echo "$what: $have messages delivered, $want expected" >&2
		exit 1
	fi
	result=$(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.3f", b - a }')
}

# send WHAT PORT SMTP-SOURCE-ARGS...: runs smtp-source, fails on its
# errors (any refused command is fatal to it).
send() {
	local what=$1 port=$2
	shift 2
	if ! smtp-source "$@" -f "sender@client.example" 127.0.0.1:"$port" \
	    > "$scratch/smtp-source.log" 2>&1; then
		echo "$what: smtp-source failed:" >&2
		cat "$scratch/smtp-source.log" >&2
		exit 1
	fi
	if [ -s "$scratch/smtp-source.log" ]; then
		echo "$what: smtp-source said:" >&2
		cat "$scratch/smtp-source.log" >&2
	fi
}

# both N SMTP-SOURCE-ARGS...: the same run of smtp-source to govmail, then
# to Postfix, each timed until N more messages are in their mailboxes;
# sets gm_t and pf_t (seconds).
both() {
	local n=$1 t0
	shift
	t0=$(clock)
	send govmail "$gm_port" "$@"
	gm_expected=$(( gm_expected + n ))
	until_done govmail "$gm_expected" "$t0"
	gm_t=$result
	t0=$(clock)
	send postfix "$pf_port" "$@"
	dv_expected=$(( dv_expected + n ))
	until_done postfix "$dv_expected" "$t0"
	pf_t=$result
}

# median T...: the middle of the times given (of an even count, the mean
# of the two middle ones).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 } END {
		if (NR % 2) printf "%.3f", t[(NR + 1) / 2]
		else printf "%.3f", (t[NR / 2] + t[NR / 2 + 1]) / 2 }'
}

# one_case LABEL N SMTP-SOURCE-ARGS...: `both`, $rounds times (govmail,
# Postfix, govmail, Postfix, ...), printed as a line of the table: the
# median rate of each side and their ratio, then the ratio of each round.
# One run of a second or two is at the mercy of whatever else the machine
# does in that second; the median of interleaved rounds much less so.
one_case() {
	local label=$1 n=$2 gms='' pfs='' each='' _
	shift 2
	for _ in $(seq "$rounds"); do
		both "$n" "$@"
		gms="$gms $gm_t" pfs="$pfs $pf_t"
		each="$each $(awk -v g="$gm_t" -v p="$pf_t" \
		    'BEGIN { printf "%.1f", p / g }')"
	done
	# shellcheck disable=SC2086 # word splitting wanted
	awk -v l="$label" -v n="$n" -v g="$(median $gms)" \
	    -v p="$(median $pfs)" -v each="${each# }" -v r="$rounds" 'BEGIN {
		printf "%-22s %16.0f %16.0f %7.1fx   (%d messages, median of %d: %.2f s vs %.2f s; each round %s)\n",
		    l, n / g, n / p, p / g, n, r, g, p, each }'
}

# A store just made, and a Postfix and Dovecot just started, are slower
# for their first few hundred messages (pages, log and queue files made
# for the first time): the same untimed warm-up for both.
both "$warmup" -d -s 1 -m "$warmup" -l 10240 -t "u@$domain"
echo "# warm-up, not timed: $warmup messages of 10 KB to each"

echo "## 1. messages/s until the last message is in its mailbox (one recipient each)"
printf '%-22s %16s %16s %8s\n' "case" "govmail msg/s" "Postfix+Dovecot" "ratio"
for size in 1 10 100; do
	n=$n_msgs
	[ "$size" -eq 100 ] && n=$(( n_msgs / 2 ))
	for sessions in 1 10; do
		label="$size KB, $sessions session"
		[ "$sessions" -gt 1 ] && label="${label}s"
		one_case "$label" "$n" -d -s "$sessions" -m "$n" \
		    -l $(( size * 1024 )) -t "u@$domain"
	done
done

echo "## 2. one 10 KB message to $fanout mailboxes, $fanout_batch RCPT per transaction (1 session)"
both "$fanout" -d -N -s 1 -r "$fanout_batch" \
    -m $(( fanout / fanout_batch )) -l 10240 -t "u@$domain"
awk -v n="$fanout" -v g="$gm_t" -v p="$pf_t" 'BEGIN {
	printf "govmail %.2f s (%.0f recipients/s), Postfix+Dovecot %.2f s (%.0f recipients/s): %.1fx\n",
	    g, n / g, p, n / p, p / g }'
# Every one of the 10,000 mailboxes holds exactly one copy.
miss=0
for i in 1 $(( fanout / 2 )) "$fanout"; do
	c=$(find "$maildirs/${i}u/new" -type f -printf . | wc -c)
	g=$( (cd "$gm" && as_nobody "$ctl" -c govmail.conf ls "${i}u@$domain") | wc -l)
	if [ "$c" -ne 1 ] || [ "$g" -ne 1 ]; then
		echo "mailbox ${i}u: Dovecot $c, govmail $g messages (1 expected)" >&2
		miss=1
	fi
done
# The last single-recipient message (100 KB of payload) arrived whole in
# both (Dovecot stores LF line ends, govmail CRLF: 1,280 bytes apart).
gm_size=$( (cd "$gm" && as_nobody "$ctl" -c govmail.conf ls "u@$domain") |
    tail -1 | cut -f2)
dv_size=$(find "$maildirs/u/new" -type f -printf '%s\n' | sort -n | tail -1)
for sz in "$gm_size" "$dv_size"; do
	if [ "${sz:-0}" -lt 100000 ] || [ "$sz" -gt 110000 ]; then
		echo "a 100 KB message is stored with $sz bytes (govmail $gm_size, Dovecot $dv_size)" >&2
		miss=1
	fi
done
[ "$miss" -eq 0 ] || exit 1
# Where Postfix's time went for those 10,000 (its delays=a/b/c/d: before
# the queue manager, in the queue manager, connection setup, LMTP
# transmission including Dovecot's delivery).
awk '/status=sent/ && /to=<[0-9]+u@/ {
	for (i = 1; i <= NF; i++) {
		if ($i ~ /^delay=/) { d = substr($i, 7) + 0; if (d > max) max = d }
		if ($i ~ /^delays=/) {
			split(substr($i, 8), a, "/")
			for (j = 1; j <= 4; j++) sum[j] += a[j]
			n++
		}
	}
} END { if (n) printf "# Postfix log: %d recipients sent, largest delay %.1f s; mean delays %.2f/%.2f/%.2f/%.2f s (before qmgr/in qmgr/connect/LMTP)\n",
    n, max, sum[1] / n, sum[2] / n, sum[3] / n, sum[4] / n }' "$pf/maillog"
echo "# spot check: 1u, $(( fanout / 2 ))u and ${fanout}u hold one copy each in both; a 100 KB message is $gm_size bytes in govmail, $dv_size in Dovecot"

# 3. Not a target of issue 4: smtp-source's own body (lines of X) shrinks
# about 640 times under zstd, which govmail stores compressed and Dovecot
# does not.  The same 100 KB case with content that does not compress (an
# attachment: base64 of random bytes, smtp-source -F, every message the
# same bytes but for the Received: header each server adds), to another
# mailbox so the checks above stay as they are.
echo "## 3. (information, not a target) 100 KB that does not compress: a base64 attachment (smtp-source -F)"
att="$scratch/attachment.eml"
{
	printf 'From: sender@client.example\nTo: a@%s\nSubject: attachment\n' "$domain"
	printf 'MIME-Version: 1.0\nContent-Type: application/octet-stream\n'
	printf 'Content-Transfer-Encoding: base64\n\n'
	head -c 74000 /dev/urandom | base64 -w 76
} > "$att"
gm_blobs() {
	(cd "$gm" && as_nobody "$ctl" -c govmail.conf stats) |
	    awk '/^blobs:/ { print $2 }'
}
n=$(( n_msgs / 2 ))
blobs0=$(gm_blobs)
for sessions in 1 10; do
	one_case "100 KB base64, $sessions sess." "$n" -d -s "$sessions" \
	    -m "$n" -F "$att" -t "2u@$domain"
done
# Each message is its own content in govmail (the Received: header
# differs), not one shared copy.
blobs1=$(gm_blobs)
if [ $(( blobs1 - blobs0 )) -ne $(( 2 * n * rounds )) ]; then
	echo "govmail stored $(( blobs1 - blobs0 )) contents for $(( 2 * n * rounds )) attachment messages" >&2
	exit 1
fi
echo "# errors logged: govmail-smtpd $(grep -ciE 'error|fatal|warn' "$gm/smtpd.log" || true), Postfix $(grep -ciE 'error|fatal|warning' "$pf/maillog" || true), Dovecot $(grep -ciE 'error|fatal|panic' "$dv/dovecot.log" || true)"
# ... and the first few of them, since the scratch folder goes at the end.
{
	grep -iE 'error|fatal|warn' "$gm/smtpd.log" || true
	grep -iE 'error|fatal|warning' "$pf/maillog" || true
	grep -iE 'error|fatal|panic' "$dv/dovecot.log" || true
} | head -5 | cut -c1-200 | sed 's/^/#   /'
gm_check "$gm" "$ctl"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup
gm_pid=
trap - EXIT
rm -rf "$scratch"
echo "# saved in $out"
