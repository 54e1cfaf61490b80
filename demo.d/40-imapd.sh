# demo.d/40-imapd.sh - govmail-imapd's demo step, sourced by quickstart.sh's
# demo_setup after 30-smtpd.sh (variables demo, top, GOVMAIL_*; function
# say).
#
# Adds an [imapd] section (loopback ports $GOVMAIL_IMAP_PORT with STARTTLS
# and $GOVMAIL_IMAPS_PORT with implicit TLS, pid file
# demo/run/govmail-imapd.pid) and, if missing, a [tls] section naming the
# demo CA's `localhost` certificate (demo/tls/server.crt and .key, made by
# 20-ca.sh) to demo/govmail.conf; starts govmail-imapd unless it already
# runs; writes demo/env.d/40-imapd.env.  Idempotent.  GOVMAIL_IMAPD may
# name the binary (VPATH builds, tests).
#
# As for smtpd, the workers never run as root: the daemon runs as the
# owner of demo/store (through setpriv when quickstart runs as root).

imapd_demo_bin=${GOVMAIL_IMAPD:-$top/imapd/govmail-imapd}
imapd_demo_conf="$demo/govmail.conf"

imapd_demo_setup() {
	local envf="$demo/env.d/40-imapd.env" pidf="$demo/run/govmail-imapd.pid"
	local host=${GOVMAIL_HOST:-127.0.0.1} pid i owner
	local -a run=()

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
	if ! grep -q '^\[tls\]' "$imapd_demo_conf"; then
		cat >> "$imapd_demo_conf" <<-EOF

		# The daemons' TLS certificate, added by demo.d/40-imapd.sh.
		[tls]
		cert_file = tls/server.crt
		key_file = tls/server.key
		EOF
	fi
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

	if [ "$(id -u)" -eq 0 ]; then
		owner=$(stat -c %U "$demo/store" 2>/dev/null || echo root)
		if [ "$owner" = root ]; then
			say "imapd: the demo store belongs to root and the workers" \
				"never run as root; run quickstart as a normal user"
			return 0
		fi
		run=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" \
			--init-groups)
		chown "$owner" "$demo/run"
	fi
	pid=$(cat "$pidf" 2>/dev/null || true)
	if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pidf"
		# -f: the parent stays ours, so the pid file is its pid.
		nohup "${run[@]}" "$imapd_demo_bin" -c "$imapd_demo_conf" -f \
			>> "$demo/log/govmail-imapd.log" 2>&1 &
		for i in 1 2 3 4 5 6 7 8 9 10; do
			[ -s "$pidf" ] && break
			sleep 0.3
		done
		if [ -s "$pidf" ]; then
			say "imapd: govmail-imapd on $host:$GOVMAIL_IMAP_PORT" \
				"(STARTTLS) and $GOVMAIL_IMAPS_PORT (TLS)" \
				"(pid $(cat "$pidf"))"
		else
			say "imapd: govmail-imapd did not start; see" \
				"$demo/log/govmail-imapd.log"
			return 1
		fi
	fi

	(umask 077 && {
		echo "GOVMAIL_IMAP_PORT=$GOVMAIL_IMAP_PORT"
		echo "GOVMAIL_IMAPS_PORT=$GOVMAIL_IMAPS_PORT"
	} > "$envf.tmp")
	if cmp -s "$envf.tmp" "$envf"; then
		rm -f "$envf.tmp"
	else
		mv "$envf.tmp" "$envf"
	fi
}

imapd_demo_setup || say "imapd: IMAP step failed"
