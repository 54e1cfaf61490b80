# demo.d/30-smtpd.sh - govmail-smtpd's demo step, sourced by quickstart.sh's
# demo_setup after 20-ca.sh (variables demo, top, GOVMAIL_*; function say).
#
# Adds an [smtpd] section (loopback ports $GOVMAIL_SMTP_PORT,
# $GOVMAIL_SUBMISSION_PORT, $GOVMAIL_SUBMISSIONS_PORT, pid file
# demo/run/govmail-smtpd.pid) and, if missing, a [tls] section naming the
# demo CA's `localhost` certificate (demo/tls/server.crt and .key, made by
# 20-ca.sh) to demo/govmail.conf; starts govmail-smtpd unless it already
# runs (as the store's owner: demo_daemon_start in lib.bash); writes
# demo/env.d/30-smtpd.env.  Idempotent.  GOVMAIL_SMTPD may name the binary
# (VPATH builds, tests).

. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

smtpd_demo_bin=${GOVMAIL_SMTPD:-$top/smtpd/govmail-smtpd}
smtpd_demo_conf="$demo/govmail.conf"

smtpd_demo_setup() {
	local host=${GOVMAIL_HOST:-127.0.0.1}

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
	demo_conf_tls "$smtpd_demo_conf" 30-smtpd.sh
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

	demo_daemon_start govmail-smtpd "$smtpd_demo_bin" "$smtpd_demo_conf" ||
		return 1
	if [ -n "$demo_started" ]; then
		say "smtpd: govmail-smtpd on $host:$GOVMAIL_SMTP_PORT," \
			"$GOVMAIL_SUBMISSION_PORT, $GOVMAIL_SUBMISSIONS_PORT" \
			"(pid $(cat "$demo/run/govmail-smtpd.pid"))"
	fi
	demo_env_put "$demo/env.d/30-smtpd.env" <<-EOF
	GOVMAIL_SMTP_PORT=$GOVMAIL_SMTP_PORT
	GOVMAIL_SUBMISSION_PORT=$GOVMAIL_SUBMISSION_PORT
	GOVMAIL_SUBMISSIONS_PORT=$GOVMAIL_SUBMISSIONS_PORT
	EOF
}

smtpd_demo_setup || say "smtpd: SMTP step failed"
