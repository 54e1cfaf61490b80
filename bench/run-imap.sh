#!/usr/bin/env bash
# run-imap.sh - the IMAP benchmark of issue 5: govmail-imapd side by side,
# in the same run and under the same load, with Debian's Dovecot (Maildir).
# Not a test.
#
#   bench/run-imap.sh [BUILD_DIR] [SCRATCH_DIR]
#
# BUILD_DIR defaults to the checkout; SCRATCH defaults to
# bench/out/imap-scratch.  Must run as root (Dovecot's master needs it; it
# and govmail-imapd run their sessions as `nobody`).  dovecot-core and
# dovecot-imapd are installed when missing; the system's Dovecot (if any)
# is neither configured nor started: ours is `dovecot -c FILE -F` with
# base_dir, state_dir, log and Maildirs under the scratch folder.
#
# Both servers get the same mail (bench/imap_fill): accounts 1u .. Nu
# (IMAP_BENCH_IDLE, default 10000) of bench.example, the first 100 with
# 200 unique messages each (2, 12 and 100 KB mixed), in a govmail store
# (store_deliver) and as Maildir files (a static passdb and userdb for
# Dovecot: every user, one password).  Both speak implicit TLS (the same
# P-256 certificate) on free loopback ports; the load generator
# bench/imap_load (one process, epoll, OpenSSL) is the same for both.
#
# Figures:
#   (a) commands/s of a mixed workload -- per session the cycle SELECT,
#       FETCH of 20 messages' headers, FETCH of one whole message, STORE
#       +/-FLAGS, UID SEARCH SUBJECT, APPEND 2 KB, UID STORE \Deleted,
#       EXPUNGE, one command in flight -- with 10 and 100 sessions (one
#       user each), over TLS, for IMAP_BENCH_SECONDS (default 20) each,
#       after a warm-up pass that opens every mailbox once (Dovecot
#       builds its index files then); the load generator's own CPU is
#       printed beside each figure.
#   (b) memory per idle connection: IMAP_BENCH_IDLE (default 10,000) TLS
#       sessions, each logged in (user i % N + 1), INBOX selected and in
#       IDLE; the RSS, PSS and anonymous PSS (private memory: heap and
#       TLS state, as opposed to shared libraries and the store's shared
#       cache) from /proc/PID/smaps_rollup, summed over every
#       process of the server, divided by the number of sessions, both as
#       a total and as the growth over the same server just restarted and
#       idle, 10 s after the last session entered IDLE.  Every session
#       must be held (counted) for 15 s from then.  govmail is measured
#       with the store's regions in System V shared memory ([store]
#       regions = shared, the default), again with them in files
#       (regions = files), and a third time with shared regions after
#       IMAP_BENCH_SECONDS of the mixed load in the same processes (a
#       server that has served mail: each worker's RSS then counts every
#       page of the memory pool it touched).  For Dovecot: its default (one imap process per session), and with
#       imap_hibernate_timeout = 5s (IMAP_BENCH_HIBERNATE=0 leaves it
#       out).  Dovecot's imap-login runs in its high-performance mode
#       (service_count = 0, a process per core holding many TLS
#       sessions), as its documentation advises for many connections; in
#       the default mode every session would have a login process too.
# IMAP_BENCH_KEEP=1 keeps the scratch folder (logs, store, Maildirs).
# Prints one line per figure and saves them in bench/out/imap-<date>.txt.
# About 8 minutes on 2 cores (Dovecot starting 10,000 imap processes is
# most of it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# free_port, stop_pid, clock, as_nobody, wait_port (no Postfix here).
. "$here/lib-peer.sh"
build=${1:-$here/..}
scratch=${2:-$here/out/imap-scratch}
imapd="$build/imapd/govmail-imapd"
ctl="$build/tools/govmailctl"
fill="$build/bench/imap_fill"
load="$build/bench/imap_load"
seconds=${IMAP_BENCH_SECONDS:-20}
idle_n=${IMAP_BENCH_IDLE:-10000}
hibernate=${IMAP_BENCH_HIBERNATE:-1}
users_full=100		# accounts with mail; the mixed load uses these
msgs=200		# messages in each of them
hold=15			# seconds the idle sessions are held at least
hold_max=600		# ... and at most (imap_load's own limit)
domain=bench.example
password=bench-password
for p in "$imapd" "$ctl" "$fill" "$load"; do
	[ -x "$p" ] || { echo "run-imap.sh: $p not built (make first)" >&2; exit 2; }
done
if [ "$(id -u)" -ne 0 ]; then
	echo "run-imap.sh: must run as root (Dovecot's master needs it)" >&2
	exit 2
fi
[ "$idle_n" -ge "$users_full" ] || { echo "run-imap.sh: IMAP_BENCH_IDLE must be >= $users_full" >&2; exit 2; }
# Sockets: 10,000 for the client, as many for the servers (a container
# may not let even root raise the hard limit: take what there is).
ulimit -Hn 131072 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $(( idle_n + 1000 )) ]; then
	echo "run-imap.sh: open files limited to $(ulimit -n); $idle_n sessions need more" >&2
	exit 2
fi

if ! command -v dovecot >/dev/null || [ ! -e /usr/lib/dovecot/imap ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y \
	    --no-install-recommends dovecot-core dovecot-imapd >&2
fi

out="$here/out/imap-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
chmod 755 "$scratch"
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$scratch"; then
	echo "run-imap.sh: nobody cannot reach $scratch; give a SCRATCH_DIR under a world-searchable folder" >&2
	exit 2
fi
gm_port=$(free_port)
dv_port=$(free_port)
while [ "$dv_port" = "$gm_port" ]; do dv_port=$(free_port); done

gm="$scratch/govmail"
dv="$scratch/dovecot"
maildirs="$dv/mail"
gm_pid= dv_pid= load_pid= inotify_old=
cleanup() {
	set +e
	if [ -n "$load_pid" ]; then
		stop_pid "$load_pid" 20; wait "$load_pid" 2>/dev/null
	fi
	if [ -n "$gm_pid" ]; then
		stop_pid "$gm_pid" 20; wait "$gm_pid" 2>/dev/null
	fi
	if [ -n "$dv_pid" ]; then
		stop_pid "$dv_pid" 20; wait "$dv_pid" 2>/dev/null
	fi
	if [ -n "$inotify_old" ]; then
		echo "$inotify_old" > "$inotify"; inotify_old=
	fi
	return 0
}
trap cleanup EXIT
# Dovecot watches each IDLE session's Maildir with an inotify instance of
# its own; the kernel's default of 128 per user would leave all but 128
# polling (and then unable to hibernate).  Raised for the run, restored
# at the end.
inotify=/proc/sys/fs/inotify/max_user_instances
inotify_old=$(cat "$inotify")
if [ "$inotify_old" -lt $(( idle_n + 1000 )) ]; then
	echo $(( idle_n + 1000 )) > "$inotify" || {
		echo "run-imap.sh: cannot raise $inotify" >&2; exit 2; }
else
	inotify_old=
fi

exec > >(tee "$out") 2>&1

# descendants PID: PID and every process below it.
descendants() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2; pids[++n] = $1 }
		END {
			keep[root] = 1; print root
			do {
				more = 0
				for (i = 1; i <= n; i++) {
					p = pids[i]
					if (!(p in keep) && (parent[p] in keep)) {
						keep[p] = 1; print p; more = 1
					}
				}
			} while (more)
		}'
}
# memory PID: "processes rss_kib pss_kib" summed over PID and its
# descendants (smaps_rollup, read in one pass: 10,000 processes).
memory() {
	descendants "$1" | sed 's|.*|/proc/&/smaps_rollup|' |
	    xargs cat 2>/dev/null | awk '
		/^Rss:/ { n++; r += $2 }
		/^Pss:/ { s += $2 }
		/^Pss_Anon:/ { a += $2 }
		END { print n + 0, r + 0, s + 0, a + 0 }'
}

echo "# IMAP benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}')"
echo "# govmail-imapd vs Dovecot $(dovecot --version | cut -d' ' -f1) (Maildir), both over implicit TLS on loopback, load generator bench/imap_load"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores)"

# ---- the mail: same accounts and messages in both --------------------
mkdir -p "$gm" "$dv/run" "$dv/state"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$scratch/key.pem" -out "$scratch/cert.pem" -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    2>/dev/null
chmod 600 "$scratch/key.pem"
cp "$scratch/key.pem" "$scratch/cert.pem" "$gm/"
cat > "$gm/govmail.conf" <<EOF
[store]
path = store
password_opslimit = 1
password_memlimit = 8K
regions = shared
[limits]
quota_messages = 100000000
quota_bytes = 1000G
[imapd]
listen_imap =
listen_imaps = 127.0.0.1:$gm_port
pid_file = imapd.pid
[tls]
cert_file = cert.pem
key_file = key.pem
EOF
chown -R nobody:nogroup "$gm"
mkdir -p "$maildirs"
chown nobody:nogroup "$maildirs"
t0=$(clock)
(cd "$gm" && as_nobody "$fill" govmail.conf "$domain" "$idle_n" \
    "$users_full" "$msgs" "$maildirs")
awk -v t0="$t0" -v t1="$(clock)" -v n="$idle_n" -v m="$users_full" -v k="$msgs" 'BEGIN {
	printf "# filled both: %d accounts, %d of them with %d messages (%d in all), in %.1f s\n",
	    n, m, k, m * k, t1 - t0 }'
echo "# mail: govmail store $(du -sh "$gm/store" | cut -f1), Maildirs $(du -sh "$maildirs" | cut -f1)"

# ---- the servers -----------------------------------------------------
start_govmail() {
	(cd "$gm" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
	    "$imapd" -c govmail.conf -f 2>> imapd.log) &
	gm_pid=$!
	wait_port "$gm_port"
}
stop_govmail() {
	stop_pid "$gm_pid" 20; wait "$gm_pid" 2>/dev/null || true; gm_pid=
}
# dovecot_conf EXTRA: writes the private Dovecot's configuration.
dovecot_conf() {
	cat > "$dv/dovecot.conf" <<EOF
# A private Dovecot for bench/run-imap.sh: IMAP over TLS on loopback only.
base_dir = $dv/run
state_dir = $dv/state
instance_name = dovecot-imapbench
log_path = $dv/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$scratch/cert.pem
ssl_key = <$scratch/key.pem
mail_location = maildir:$maildirs/%n
first_valid_uid = 1
mail_max_userip_connections = 100000
default_process_limit = 20000
default_client_limit = 15000
passdb {
  driver = static
  args = password=$password
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$maildirs/%n allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $dv_port
  }
  # High-performance mode: login processes (one per core) hold many TLS
  # sessions each and proxy them to the imap processes.
  service_count = 0
  process_min_avail = $(nproc)
  client_limit = 15000
  vsz_limit = 2G
}
service imap {
  process_limit = 20000
}
service anvil {
  client_limit = 15000
}
service auth {
  client_limit = 15000
}
$1
EOF
}
start_dovecot() {
	dovecot -c "$dv/dovecot.conf" -F >> "$dv/stderr.log" 2>&1 &
	dv_pid=$!
	wait_port "$dv_port"
}
stop_dovecot() {
	stop_pid "$dv_pid" 20; wait "$dv_pid" 2>/dev/null || true; dv_pid=
}
dovecot_conf ""
start_govmail
start_dovecot

# ---- (a) the mixed workload ------------------------------------------
# mix NAME PORT CLIENTS SECONDS: prints imap_load's line, fails on errors.
mix() {
	local name=$1 port=$2 clients=$3 secs=$4
	if ! "$load" -t -u "$users_full" -d "$domain" -w "$password" \
	    mix 127.0.0.1 "$port" "$clients" "$secs" > "$scratch/mix.out" \
	    2> "$scratch/mix.err"; then
		echo "$name: the mixed load failed:" >&2
		cat "$scratch/mix.out" "$scratch/mix.err" >&2
		exit 1
	fi
	if [ -s "$scratch/mix.err" ]; then cat "$scratch/mix.err" >&2; fi
	cat "$scratch/mix.out"
}
field() { tr ' ' '\n' | awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }
echo "## warm-up: every mailbox opened once, 3 s of the mixed load with $users_full sessions (not counted)"
mix govmail "$gm_port" "$users_full" 3 > /dev/null
mix Dovecot "$dv_port" "$users_full" 3 > /dev/null
echo "## (a) mixed commands/s over TLS, one command in flight per session, ${seconds} s each"
printf '%-12s %14s %14s %8s   %s\n' sessions "govmail cmd/s" "Dovecot cmd/s" ratio "load generator CPU (govmail, Dovecot)"
lat=
for clients in 10 100; do
	g=$(mix govmail "$gm_port" "$clients" "$seconds")
	d=$(mix Dovecot "$dv_port" "$clients" "$seconds")
	gr=$(echo "$g" | field rate); dr=$(echo "$d" | field rate)
	gc=$(echo "$g" | field load_cpu_pct); dc=$(echo "$d" | field load_cpu_pct)
	lat="$lat$(printf '%4d sessions, govmail: %s\n%4d sessions, Dovecot: %s' "$clients" "$(echo "$g" | sed -n 's/^mean_ms //p')" "$clients" "$(echo "$d" | sed -n 's/^mean_ms //p')")
"
	awk -v c="$clients" -v g="$gr" -v d="$dr" -v gc="$gc" -v dc="$dc" \
	    -v gn="$(echo "$g" | field commands)" -v dn="$(echo "$d" | field commands)" 'BEGIN {
		printf "%-12s %14.0f %14.0f %7.2fx   %s%%, %s%% of one core (%d and %d commands, 0 errors)\n",
		    c, g, d, g / d, gc, dc, gn, dn }'
done
echo "# mean milliseconds per command:"
printf '%s' "$lat" | sed 's/^/#   /'
# The mailboxes hold what they held: every APPEND was expunged again
# (imap_load finishes a cycle cut off by the end of the clock).
for u in 1 $users_full; do
	gm_left=$( (cd "$gm" && as_nobody "$ctl" -c govmail.conf ls "${u}u@$domain") | wc -l)
	dv_left=$(find "$maildirs/${u}u/cur" "$maildirs/${u}u/new" -type f | wc -l)
	if [ "$gm_left" -ne "$msgs" ] || [ "$dv_left" -ne "$msgs" ]; then
		echo "after the load ${u}u holds $gm_left messages in govmail, $dv_left in Dovecot ($msgs expected)" >&2
		exit 1
	fi
done
echo "# after the load, 1u and ${users_full}u hold $msgs messages each in both servers, as before it"

# ---- (b) memory per idle TLS connection ------------------------------
# idle NAME PORT PID: holds idle_n sessions in IDLE, prints the memory.
idle() {
	local name=$1 port=$2 pid=$3 base now i t0 ready
	sleep 2
	base=$(memory "$pid")
	t0=$(clock)
	rm -f "$scratch/idle.out"
	"$load" -t -u "$idle_n" -d "$domain" -w "$password" \
	    idle 127.0.0.1 "$port" "$idle_n" "$hold_max" > "$scratch/idle.out" \
	    2> "$scratch/idle.err" &
	load_pid=$!
	ready=
	while kill -0 "$load_pid" 2>/dev/null; do
		if grep -q '^READY' "$scratch/idle.out" 2>/dev/null; then
			ready=1; break
		fi
		sleep 0.2
	done
	if [ -z "$ready" ] || ! grep -q "^READY $idle_n idling $idle_n lost 0 errors 0" "$scratch/idle.out"; then
		wait "$load_pid" || true; load_pid=
		echo "$name: the $idle_n idle sessions were not all set up:" >&2
		cat "$scratch/idle.out" "$scratch/idle.err" >&2
		exit 1
	fi
	local setup t_ready
	t_ready=$(clock)
	setup=$(awk -v a="$t0" -v b="$t_ready" 'BEGIN { printf "%.1f", b - a }')
	sleep 10	# let hibernation (5 s after IDLE began) happen
	now=$(memory "$pid")
	# Held at least $hold s after the last one went into IDLE.
	while awk -v a="$t_ready" -v b="$(clock)" -v h="$hold" 'BEGIN { exit !(b - a < h) }'; do
		sleep 0.5
	done
	kill -USR1 "$load_pid" 2>/dev/null || true
	if ! wait "$load_pid" || ! grep -q "^HELD $idle_n of $idle_n " "$scratch/idle.out"; then
		load_pid=
		echo "$name: idle sessions were lost:" >&2
		cat "$scratch/idle.out" "$scratch/idle.err" >&2
		exit 1
	fi
	load_pid=
	set -- $base $now
	awk -v name="$name" -v n="$idle_n" -v bp="$1" -v br="$2" -v bs="$3" \
	    -v ba="$4" -v np="$5" -v nr="$6" -v ns="$7" -v na="$8" \
	    -v setup="$setup" \
	    -v held="$(grep '^HELD' "$scratch/idle.out")" 'BEGIN {
		printf "%-30s %9.1f %9.1f %9.1f %9.1f %9.1f   %d processes (idle server: %d, %.0f MiB PSS); set up in %s s; %s\n",
		    name, nr / n, ns / n, (nr - br) / n, (ns - bs) / n,
		    (na - ba) / n, np, bp, bs / 1024, setup, held }'
}
echo "## (b) memory per idle TLS session: $idle_n sessions logged in, INBOX selected, in IDLE (each server restarted first)"
printf '%-30s %9s %9s %9s %9s %9s\n' "" "RSS/conn" "PSS/conn" "+RSS/con" "+PSS/con" "+anon/con"
printf '%-30s %9s %9s %9s %9s %9s\n' "(KiB; + = growth over idle)" "" "" "" "" ""
echo "# +anon: private memory (heap: TLS state, sessions); the rest of +PSS is"
echo "# file-backed and shared: libraries and, for govmail, the pages of the"
echo "# store's shared cache (a fixed size, [store] cache_size) the workers touched"
stop_govmail
start_govmail
idle "govmail-imapd" "$gm_port" "$gm_pid"
stop_govmail
# The same with the regions in files: the first open makes them anew.
sed -i 's/^regions = .*/regions = files/' "$gm/govmail.conf"
start_govmail
idle "govmail-imapd (region files)" "$gm_port" "$gm_pid"
stop_govmail
# Shared regions again, and a server that has served mail: the mixed load
# first, in the same processes (each worker's RSS then counts every page
# of the memory pool it touched, and the load's own leftovers).
sed -i 's/^regions = .*/regions = shared/' "$gm/govmail.conf"
start_govmail
mix govmail "$gm_port" "$users_full" "$seconds" > /dev/null
idle "govmail-imapd (after mixed load)" "$gm_port" "$gm_pid"
stop_govmail
stop_dovecot
start_dovecot
idle "Dovecot (default)" "$dv_port" "$dv_pid"
if [ "$hibernate" = 1 ]; then
	stop_dovecot
	dovecot_conf "imap_hibernate_timeout = 5s
service imap-hibernate {
  unix_listener imap-hibernate {
    mode = 0666
  }
}
service imap {
  unix_listener imap-master {
    mode = 0666
  }
}"
	start_dovecot
	idle "Dovecot (hibernate after 5 s)" "$dv_port" "$dv_pid"
fi
echo "# errors logged: govmail-imapd $(grep -ciE 'error|fatal|warn' "$gm/imapd.log" || true), Dovecot $(grep -ciE 'error|fatal|panic' "$dv/dovecot.log" || true)"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup
gm_pid= dv_pid= load_pid=
trap - EXIT
[ "${IMAP_BENCH_KEEP:-0}" = 1 ] || rm -rf "$scratch"
echo "# saved in $out"
