# demo.d/30-smtpd.sh - govmail-smtpd's demo step, sourced by quickstart.sh's
# demo_setup after 20-ca.sh (variables demo, top, GOVMAIL_*; function say).
#
# Adds an [smtpd] section (loopback ports $GOVMAIL_SMTP_PORT,
# $GOVMAIL_SUBMISSION_PORT, $GOVMAIL_SUBMISSIONS_PORT, pid file
# demo/run/govmail-smtpd.pid) and, if missing, a [tls] section naming the
# demo CA's `localhost` certificate (demo/tls/server.crt and .key, made by
# 20-ca.sh) to demo/govmail.conf; starts govmail-smtpd unless it already
# runs; writes demo/env.d/30-smtpd.env.  Idempotent.  GOVMAIL_SMTPD may
# name the binary (VPATH builds, tests).
#
# The store's files are private to one user (mode 0600) and the workers
# never run as root, so the daemon runs as the owner of demo/store: as
# that user directly when quickstart is not run as root (development
# mode), else through setpriv; a store owned by root cannot be served.

smtpd_demo_bin=${GOVMAIL_SMTPD:-$top/smtpd/govmail-smtpd}
smtpd_demo_conf="$demo/govmail.conf"

smtpd_demo_setup() {
	local envf="$demo/env.d/30-smtpd.env" pidf="$demo/run/govmail-smtpd.pid"
	local host=${GOVMAIL_HOST:-127.0.0.1} pid i owner
	local -a run=()

	if [ ! -x "$smtpd_demo_bin" ] || [ ! -f "$smtpd_demo_conf" ]; then
		say "smtpd: govmail-smtpd or $smtpd_demo_conf missing; skipped"
		return 0
	fi
	if [ ! -s "$demo/tls/server.crt" ] || [ ! -s "$demo/tls/server.key" ]
	then
		say "smtpd: no demo TLS certificate in $demo/tls; skipped"
		return 0
	fi
	mkdir -p "$demo/run" "$demo/log" "$demo/env.d"
	if ! grep -q '^\[tls\]' "$smtpd_demo_conf"; then
		cat >> "$smtpd_demo_conf" <<-EOF

		# The daemons' TLS certificate, added by demo.d/30-smtpd.sh.
		[tls]
		cert_file = tls/server.crt
		key_file = tls/server.key
		EOF
	fi
	if ! grep -q '^\[smtpd\]' "$smtpd_demo_conf"; then
		cat >> "$smtpd_demo_conf" <<-EOF

		# govmail-smtpd on loopback, added by demo.d/30-smtpd.sh.
		[smtpd]
		hostname = localhost
		listen_smtp = $host:$GOVMAIL_SMTP_PORT
		listen_submission = $host:$GOVMAIL_SUBMISSION_PORT
		listen_submissions = $host:$GOVMAIL_SUBMISSIONS_PORT
		workers = 2
		pid_file = run/govmail-smtpd.pid
		notice_ca_file = ca/root.crt
		notice_crl_file = ca/issuing.crl
		EOF
	fi
	# Notice lists need the CA to verify signatures against (issue 6); a
	# demo made before that gets the keys in a second [smtpd] block.
	if ! grep -q '^notice_ca_file' "$smtpd_demo_conf"; then
		cat >> "$smtpd_demo_conf" <<-EOF

		# Signed notices verified against the demo CA, added by
		# demo.d/30-smtpd.sh.
		[smtpd]
		notice_ca_file = ca/root.crt
		notice_crl_file = ca/issuing.crl
		EOF
	fi

	if [ "$(id -u)" -eq 0 ]; then
		owner=$(stat -c %U "$demo/store" 2>/dev/null || echo root)
		if [ "$owner" = root ]; then
			say "smtpd: the demo store belongs to root and the workers" \
				"never run as root; run quickstart as a normal user"
			return 0
		fi
		run=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" \
			--init-groups)
		# The daemon writes its pid file as that user.
		chown "$owner" "$demo/run"
	fi
	pid=$(cat "$pidf" 2>/dev/null || true)
	if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pidf"
		# -f: the parent stays ours, so the pid file is its pid.
		nohup "${run[@]}" "$smtpd_demo_bin" -c "$smtpd_demo_conf" -f \
			>> "$demo/log/govmail-smtpd.log" 2>&1 &
		for i in 1 2 3 4 5 6 7 8 9 10; do
			[ -s "$pidf" ] && break
			sleep 0.3
		done
		if [ -s "$pidf" ]; then
			say "smtpd: govmail-smtpd on $host:$GOVMAIL_SMTP_PORT," \
				"$GOVMAIL_SUBMISSION_PORT, $GOVMAIL_SUBMISSIONS_PORT" \
				"(pid $(cat "$pidf"))"
		else
			say "smtpd: govmail-smtpd did not start; see" \
				"$demo/log/govmail-smtpd.log"
			return 1
		fi
	fi

	(umask 077 && {
		echo "GOVMAIL_SMTP_PORT=$GOVMAIL_SMTP_PORT"
		echo "GOVMAIL_SUBMISSION_PORT=$GOVMAIL_SUBMISSION_PORT"
		echo "GOVMAIL_SUBMISSIONS_PORT=$GOVMAIL_SUBMISSIONS_PORT"
	} > "$envf.tmp")
	if cmp -s "$envf.tmp" "$envf"; then
		rm -f "$envf.tmp"
	else
		mv "$envf.tmp" "$envf"
	fi
}

smtpd_demo_setup || say "smtpd: SMTP step failed"
