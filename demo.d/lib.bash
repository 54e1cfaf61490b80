# demo.d/lib.bash - functions shared by the demo steps (demo.d/NN-*.sh),
# which source it; uses the caller's say and demo.  Not a step itself (the
# steps are the *.sh files).

# demo_env_put FILE: standard input becomes FILE (mode 0600), replaced
# only when it changed, so a second run leaves it as it was.
demo_env_put() {
	local f=$1
	(umask 077 && cat > "$f.tmp")
	if cmp -s "$f.tmp" "$f"; then
		rm -f "$f.tmp"
	else
		mv "$f.tmp" "$f"
	fi
}

# demo_conf_tls CONF STEP: a [tls] section naming the demo CA's localhost
# certificate (made by 20-ca.sh), unless CONF has one.
demo_conf_tls() {
	grep -q '^\[tls\]' "$1" && return 0
	cat >> "$1" <<-EOF

	# The daemons' TLS certificate, added by demo.d/$2.
	[tls]
	cert_file = tls/server.crt
	key_file = tls/server.key
	EOF
}

# demo_daemon_start NAME BIN CONF: start a daemon (-f, its pid file is
# demo/run/NAME.pid) unless it runs.  The store's files are private to one
# user and the workers never run as root, so the daemon runs as the owner
# of demo/store: directly when quickstart is not run as root, else through
# setpriv; a store owned by root cannot be served.  Returns 0 when it
# runs (demo_started says whether this call started it).
demo_daemon_start() {
	local name=$1 bin=$2 conf=$3 pidf="$demo/run/$1.pid" pid owner i
	local -a run=()

	demo_started=
	if [ "$(id -u)" -eq 0 ]; then
		owner=$(stat -c %U "$demo/store" 2>/dev/null || echo root)
		if [ "$owner" = root ]; then
			say "$name: the demo store belongs to root and the" \
				"workers never run as root; run quickstart as a" \
				"normal user"
			return 1
		fi
		run=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" \
			--init-groups)
		# The daemon writes its pid file as that user.
		chown "$owner" "$demo/run"
	fi
	pid=$(cat "$pidf" 2>/dev/null || true)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
	rm -f "$pidf"
	# -f: the parent stays ours, so the pid file is its pid.
	nohup "${run[@]}" "$bin" -c "$conf" -f >> "$demo/log/$name.log" 2>&1 &
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -s "$pidf" ] && break
		sleep 0.3
	done
	if [ ! -s "$pidf" ]; then
		say "$name did not start; see $demo/log/$name.log"
		return 1
	fi
	demo_started=1
}
