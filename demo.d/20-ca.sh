# demo.d/20-ca.sh - the certificate authority's demo step, sourced by
# quickstart.sh's demo_setup after 10-store.sh (variables demo, top,
# GOVMAIL_*; function say).
#
# Makes a demo CA under demo/ca (key passphrase in demo/ca-pass, 0600),
# the `localhost` TLS server certificate for the daemons in demo/tls/,
# a certificate with a generated key as a PKCS#12 for every demo account
# in demo/pki/ (password beside it in NAME.p12.pass, 0600), starts
# `govmail-ca serve` on $GOVMAIL_PKI_PORT (PID in demo/run/govmail-ca.pid)
# and writes demo/env.d/20-ca.env.  Idempotent: what exists is kept; an
# account that already has a good certificate gets no new one.

. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

ca_demo_bin=${GOVMAIL_CA:-$top/ca/govmail-ca}
ca_demo_conf="$demo/govmail.conf"
ca_demo_port=${GOVMAIL_PKI_PORT:-2080}
ca_demo_url="http://127.0.0.1:$ca_demo_port"

ca_demo_run() {
	"$ca_demo_bin" -c "$ca_demo_conf" "$@"
}

# ADDRESS PROFILE [OPTIONS]: a good certificate with a PKCS#12, or make one.
ca_demo_issue() {
	local addr=$1 profile=$2 p12="$demo/pki/$1.p12" out pw
	shift 2
	if [ -f "$p12" ] && [ -f "$p12.pass" ] &&
		ca_demo_run find --email "$addr" 2>/dev/null | grep -q ' good '; then
		return 0
	fi
	out=$(ca_demo_run issue --profile "$profile" "$addr" --generate \
		--p12 "$p12" "$@" 2>"$demo/log/govmail-ca-issue.err") || return 1
	pw=$(printf '%s\n' "$out" | sed -n 's/^password //p')
	(umask 077 && printf '%s\n' "$pw" > "$p12.pass")
	say "ca: $profile certificate for $addr in $p12"
}

# The address 10-store.sh recorded for ROLE, or nothing.
ca_demo_user() {
	sed -n "s/^GOVMAIL_$1_USER=//p" "$demo/env.d/10-store.env" \
		2>/dev/null | head -n 1
}

ca_demo_setup() {
	local envf="$demo/env.d/20-ca.env" pidf="$demo/run/govmail-ca.pid"
	local dep off legal cit pid i

	if [ ! -x "$ca_demo_bin" ] || [ ! -f "$ca_demo_conf" ]; then
		say "ca: govmail-ca or $ca_demo_conf missing; CA step skipped"
		return 0
	fi
	mkdir -p "$demo/run" "$demo/log" "$demo/tls" "$demo/pki" "$demo/env.d"
	chmod 700 "$demo/pki"
	if [ ! -s "$demo/ca-pass" ]; then
		(umask 077 && openssl rand -base64 24 > "$demo/ca-pass")
	fi
	if ! grep -q '^\[ca\]' "$ca_demo_conf"; then
		cat >> "$ca_demo_conf" <<-EOF

		# The demo CA, added by demo.d/20-ca.sh.
		[ca]
		dir = ca
		passphrase_file = ca-pass
		base_url = $ca_demo_url
		listen = 127.0.0.1:$ca_demo_port
		EOF
	fi
	if [ ! -f "$demo/ca/issuing.crt" ]; then
		ca_demo_run init >/dev/null || return 1
		say "ca: demo CA in $demo/ca"
	fi
	if [ ! -s "$demo/tls/server.crt" ] || [ ! -s "$demo/tls/server.key" ]; then
		ca_demo_run issue-server --dns localhost --ip 127.0.0.1 \
			--key-out "$demo/tls/server.key" \
			--cert-out "$demo/tls/server.crt" >/dev/null || return 1
		say "ca: TLS server certificate for localhost in $demo/tls"
	fi

	# The accounts 10-store.sh made (its env file names them).
	dep=$(ca_demo_user DEPARTMENT)
	off=$(ca_demo_user OFFICIAL)
	legal=$(ca_demo_user LEGAL)
	if [ -n "$dep" ]; then
		ca_demo_issue "$dep" department || say "ca: no certificate for $dep"
	fi
	if [ -n "$off" ]; then
		ca_demo_issue "$off" official || say "ca: no certificate for $off"
	fi
	if [ -n "$legal" ]; then
		ca_demo_issue "$legal" legal-person ||
			say "ca: no certificate for $legal"
	fi
	for i in CITIZEN CITIZEN2 CITIZEN3; do
		cit=$(ca_demo_user $i)
		[ -n "$cit" ] || continue
		# A citizen whose identity was checked gets an IV certificate,
		# the others a mailbox-validated one.
		ca_demo_issue "$cit" citizen ||
			ca_demo_issue "$cit" citizen --unverified ||
			say "ca: no certificate for $cit"
	done

	pid=$(cat "$pidf" 2>/dev/null || true)
	if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
		nohup "$ca_demo_bin" -c "$ca_demo_conf" serve \
			>> "$demo/log/govmail-ca.log" 2>&1 &
		echo $! > "$pidf"
		for i in 1 2 3 4 5 6 7 8 9 10; do
			curl -sf -o /dev/null "$ca_demo_url/ca/root.crt" && break
			sleep 0.3
		done
		say "ca: govmail-ca serve on $ca_demo_url (pid $(cat "$pidf"))"
	fi

	{
		echo "GOVMAIL_CA_ROOT=$demo/ca/root.crt"
		echo "GOVMAIL_PKI_URL=$ca_demo_url"
		echo "GOVMAIL_TLS_CERT=$demo/tls/server.crt"
		echo "GOVMAIL_TLS_KEY=$demo/tls/server.key"
		if [ -n "$dep" ] && [ -f "$demo/pki/$dep.p12.pass" ]; then
			echo "GOVMAIL_OFFICIAL_P12=$demo/pki/$dep.p12"
			echo "GOVMAIL_OFFICIAL_P12_PASS=$(cat "$demo/pki/$dep.p12.pass")"
		fi
	} | demo_env_put "$envf"
}

ca_demo_setup || say "ca: CA step failed"
