# lib-peer.sh - shell functions shared by the benchmarks that measure a
# reference mail system in the same run: a private Postfix delivering to a
# private Dovecot over LMTP on loopback, both durable (Postfix fsyncs its
# queue file before its 250; Dovecot runs with mail_fsync = always, so its
# LMTP 250 follows the fsync of the Maildir file).  Sourced by
# bench/run-smtp.sh and bench/run-notice.sh (and by bench/run-imap.sh for
# its small helpers); not run on its own.  Trusts
# its callers (the benchmark scripts) and the Debian packages.
#
#   . "$here/lib-peer.sh"
#   peer_install                     install postfix, dovecot-core and
#                                    dovecot-lmtpd when missing (root)
#   peer_start DIR DOMAIN N PF_PORT DV_PORT
#                                    Dovecot (Maildirs for u and 1u .. Nu
#                                    made beforehand) and Postfix under
#                                    DIR; sets peer_pf_pid, peer_dv_pid,
#                                    peer_queue, peer_maildirs, peer_pf,
#                                    peer_dv
#   peer_describe                    two "# ..." lines on their settings
#   pf_queued                        messages still in Postfix's queue
#   dv_count                         files in every Maildir's new/
#   peer_stop                        both stopped by PID (idempotent)
# and the small helpers free_port, stop_pid PID [SECONDS], clock,
# as_nobody CMD...,
# wait_port PORT; for the govmail side, gm_conf_store (the [store] and
# [limits] sections every benchmark store uses), gm_check DIR CTL
# (govmailctl check, exit 1 on damage) and gm_smtpd_start DIR
# SMTPD PORT... (govmail-smtpd as nobody in DIR, its log DIR/smtpd.log,
# gm_pid set, every PORT listening before it returns).  The system's Postfix and Dovecot (if any) are never
# touched: everything runs from DIR, each process stopped by its PID.

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pid() {	# stop_pid PID [SECONDS]: SIGTERM, wait (10 s), then SIGKILL
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq $(( ${2:-10} * 10 ))); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

clock() { date +%s.%N; }

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }

wait_port() {
	local i
	for i in $(seq 100); do
		python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# The [store] and [limits] of a benchmark store: cheap password hashes
# (the accounts are made by the thousand), no quota in the way; regions
# in shared memory, the default (GM_REGIONS=files: in files).
gm_conf_store() {
	printf '%s\n' '[store]' 'path = store' 'password_opslimit = 1' \
	    'password_memlimit = 8K' "regions = ${GM_REGIONS:-shared}" \
	    '[limits]' 'quota_messages = 100000000' 'quota_bytes = 1000G'
}

# gm_check DIR CTL: govmailctl check of the store in DIR, or exit 1 with
# what it found.
gm_check() {
	if (cd "$1" && as_nobody "$2" -c govmail.conf check) > "$1/check.log" 2>&1; then
		echo "# govmailctl check: the store is consistent"
	else
		echo "govmailctl check found damage:" >&2; cat "$1/check.log" >&2; exit 1
	fi
}

gm_smtpd_start() {
	local dir=$1 bin=$2 p
	shift 2
	(cd "$dir" && exec setpriv --reuid=nobody --regid=nogroup \
	    --clear-groups "$bin" -c govmail.conf -f 2> smtpd.log) &
	gm_pid=$!
	for p in "$@"; do wait_port "$p"; done
}

# The reference's packages, installed without configuring or starting
# the system's Postfix or Dovecot.
peer_install() {
	if ! command -v smtp-source >/dev/null || ! command -v dovecot >/dev/null ||
	    [ ! -e /usr/lib/dovecot/lmtp ]; then
		echo "postfix postfix/main_mailer_type select No configuration" |
		    debconf-set-selections
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
		    --no-install-recommends postfix dovecot-core dovecot-lmtpd >&2
	fi
}

peer_pf_pid= peer_dv_pid=
peer_pf= peer_dv= peer_queue= peer_maildirs=

peer_start() {
	local dir=$1 domain=$2 n=$3 pf_port=$4 dv_port=$5
	peer_dv="$dir/dovecot"
	peer_pf="$dir/postfix"
	peer_queue="$peer_pf/queue"
	peer_maildirs="$peer_dv/mail"
	peer_dv_port=$dv_port

	# ---- Dovecot -------------------------------------------------
	mkdir -p "$peer_dv/run" "$peer_dv/state" "$peer_maildirs"
	# The Maildirs exist beforehand, as govmail's INBOXes do once the
	# accounts are made; Dovecot adds its index files at the first
	# delivery.
	(cd "$peer_maildirs" && for i in u $(seq -f '%.0fu' 1 "$n"); do
		echo "$i/new"; echo "$i/cur"; echo "$i/tmp"
	done | xargs mkdir -p)
	chown -R nobody:nogroup "$peer_maildirs"
	cat > "$peer_dv/dovecot.conf" <<EOF
# A private Dovecot for the benchmarks (bench/lib-peer.sh): LMTP on
# loopback only.
base_dir = $peer_dv/run
state_dir = $peer_dv/state
instance_name = dovecot-bench-$dv_port
log_path = $peer_dv/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
# Durable as govmail: fsync each delivered file before the LMTP 250.
mail_fsync = always
mail_location = maildir:$peer_maildirs/%n
first_valid_uid = 1
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$peer_maildirs/%n allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $dv_port
  }
}
EOF
	dovecot -c "$peer_dv/dovecot.conf" -F > "$peer_dv/stderr.log" 2>&1 &
	peer_dv_pid=$!
	wait_port "$dv_port"

	# ---- Postfix -------------------------------------------------
	mkdir -p "$peer_pf/etc" "$peer_queue" "$peer_pf/data"
	chown postfix "$peer_pf/data"
	# Postfix's own master.cf, without chroot (the queue is private),
	# the smtpd on our port, the optional pipe transports and tlsmgr
	# left out.
	awk -v port="$pf_port" '
		/^#/ || /^ / || /^$/ { next }
		$1 == "smtp" && $2 == "inet" {
			print "127.0.0.1:" port " inet n - n - - smtpd"; next }
		$1 == "tlsmgr" || $8 == "pipe" { next }
		{ $5 = "n"; print }' /usr/share/postfix/master.cf.dist \
	    > "$peer_pf/etc/master.cf"
	cat > "$peer_pf/etc/main.cf" <<EOF
# A private Postfix for the benchmarks (bench/lib-peer.sh); everything
# else is the default.
compatibility_level = 3.6
queue_directory = $peer_queue
data_directory = $peer_pf/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench-$pf_port
maillog_file = $peer_pf/maillog
maillog_file_prefixes = $peer_pf
myhostname = pf.$domain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
virtual_mailbox_domains = $domain
virtual_transport = lmtp:inet:127.0.0.1:$dv_port
EOF
	postfix -c "$peer_pf/etc" start >/dev/null 2>&1 || {
		echo "postfix did not start:" >&2; cat "$peer_pf/maillog" >&2
		return 1; }
	peer_pf_pid=$(tr -d ' ' < "$peer_queue/pid/master.pid")
	wait_port "$pf_port"
}

peer_describe() {
	echo "# Postfix: defaults but for the private paths, no chroot, virtual_transport = lmtp:inet:127.0.0.1:$peer_dv_port ($(postconf -x -c "$peer_pf/etc" -h lmtp_destination_concurrency_limit) concurrent LMTP sessions, $(postconf -x -c "$peer_pf/etc" -h lmtp_destination_recipient_limit) recipients per LMTP transaction)"
	echo "# Dovecot: mail_fsync = always, Maildir, static userdb, LMTP on 127.0.0.1:$peer_dv_port"
}

pf_queued() {
	find "$peer_queue/incoming" "$peer_queue/active" "$peer_queue/deferred" \
	    "$peer_queue/hold" "$peer_queue/maildrop" -type f -printf . | wc -c
}

dv_count() {
	find "$peer_maildirs" -path '*/new/*' -type f -printf . | wc -c
}

peer_stop() {
	if [ -z "$peer_pf_pid" ] && [ -n "$peer_queue" ] &&
	    [ -s "$peer_queue/pid/master.pid" ]; then
		peer_pf_pid=$(tr -d ' ' < "$peer_queue/pid/master.pid")
	fi
	[ -n "$peer_pf_pid" ] && stop_pid "$peer_pf_pid"
	if [ -n "$peer_dv_pid" ]; then
		stop_pid "$peer_dv_pid"; wait "$peer_dv_pid" 2>/dev/null
	fi
	peer_pf_pid= peer_dv_pid=
	return 0
}
