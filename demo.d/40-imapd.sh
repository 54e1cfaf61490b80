# demo.d/40-imapd.sh - govmail-imapd's demo step, sourced by quickstart.sh's
# demo_setup after 30-smtpd.sh (variables demo, top, GOVMAIL_*; function
# say).
#
# Adds an [imapd] section (loopback ports $GOVMAIL_IMAP_PORT with STARTTLS
# and $GOVMAIL_IMAPS_PORT with implicit TLS, pid file
# demo/run/govmail-imapd.pid) and, if missing, a [tls] section naming the
# demo CA's `localhost` certificate (demo/tls/server.crt and .key, made by
# 20-ca.sh) to demo/govmail.conf; starts govmail-imapd unless it already
# runs (as the store's owner: demo_daemon_start in lib.bash); writes
# demo/env.d/40-imapd.env.  Idempotent.  GOVMAIL_IMAPD may name the binary
# (VPATH builds, tests).

. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

imapd_demo_bin=${GOVMAIL_IMAPD:-$top/imapd/govmail-imapd}
imapd_demo_conf="$demo/govmail.conf"

imapd_demo_setup() {
	local host=${GOVMAIL_HOST:-127.0.0.1}

	if [ ! -x "$imapd_demo_bin" ] || [ ! -f "$imapd_demo_conf" ]; then
		say "imapd: govmail-imapd or $imapd_demo_conf missing; skipped"
		return 0
	fi
	if [ ! -s "$demo/tls/server.crt" ] || [ ! -s "$demo/tls/server.key" ]
	then
		say "imapd: no demo TLS certificate in $demo/tls; skipped"
		return 0
	fi
	mkdir -p "$demo/run" "$demo/log" "$demo/env.d"
	demo_conf_tls "$imapd_demo_conf" 40-imapd.sh
	if ! grep -q '^\[imapd\]' "$imapd_demo_conf"; then
		cat >> "$imapd_demo_conf" <<-EOF

		# govmail-imapd on loopback, added by demo.d/40-imapd.sh.
		[imapd]
		listen_imap = $host:$GOVMAIL_IMAP_PORT
		listen_imaps = $host:$GOVMAIL_IMAPS_PORT
		workers = 2
		pid_file = run/govmail-imapd.pid
		EOF
	fi

	demo_daemon_start govmail-imapd "$imapd_demo_bin" "$imapd_demo_conf" ||
		return 1
	if [ -n "$demo_started" ]; then
		say "imapd: govmail-imapd on $host:$GOVMAIL_IMAP_PORT" \
			"(STARTTLS) and $GOVMAIL_IMAPS_PORT (TLS)" \
			"(pid $(cat "$demo/run/govmail-imapd.pid"))"
	fi
	demo_env_put "$demo/env.d/40-imapd.env" <<-EOF
	GOVMAIL_IMAP_PORT=$GOVMAIL_IMAP_PORT
	GOVMAIL_IMAPS_PORT=$GOVMAIL_IMAPS_PORT
	EOF
}

imapd_demo_setup || say "imapd: IMAP step failed"
