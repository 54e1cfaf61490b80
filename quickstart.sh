#!/usr/bin/env bash
# quickstart.sh - the two set-up commands of govmail.
#
#   ./quickstart.sh         install missing Debian packages, build, and start a
#                           demo installation under demo/ on loopback
#   ./quickstart.sh test    install, build, and run the whole test suite;
#                           ends with "N passed, N failed", non-zero on failure
#   ./quickstart.sh stop    stop what the demo started
#
# Running it twice is harmless: packages, the build and the demo are only
# made when missing.  Ports come from the environment (GOVMAIL_SMTP_PORT ...).
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
demo="$top/demo"

# Debian packages the build, the tests and the demo need.
PACKAGES="build-essential autoconf automake libtool pkg-config
	libssl-dev openssl libetpan-dev libdb5.3-dev db5.3-util libsodium-dev
	libsasl2-dev libsasl2-modules sasl2-bin libevent-dev libinih-dev
	libcmocka-dev libmicrohttpd-dev zlib1g-dev libzstd-dev libidn2-dev
	libcurl4-gnutls-dev
	python3 swaks curl isync
	gpgsm libnss3-tools acl util-linux fetchmail"

say() { printf 'quickstart: %s\n' "$*"; }

install_packages() {
	local missing="" p
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
			| grep -q 'install ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing:$missing"
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
}

build() {
	if [ ! -x configure ] || [ configure.ac -nt configure ]; then
		say "autoreconf"
		autoreconf -fi >/dev/null
	fi
	if [ ! -f Makefile ]; then
		say "configure"
		./configure --enable-werror ${GOVMAIL_CONFIGURE_FLAGS:-} >/dev/null
	fi
	say "make"
	make -j"$(nproc)" >/dev/null
}

# The demo's ports: each may be overridden from the environment.
: "${GOVMAIL_HOST:=127.0.0.1}"
: "${GOVMAIL_SMTP_PORT:=2525}"
: "${GOVMAIL_SUBMISSION_PORT:=2587}"
: "${GOVMAIL_SUBMISSIONS_PORT:=2465}"
: "${GOVMAIL_IMAP_PORT:=2143}"
: "${GOVMAIL_IMAPS_PORT:=2993}"
: "${GOVMAIL_PKI_PORT:=2080}"
: "${GOVMAIL_DOMAIN:=demo.gov.example}"

# Later parts (CA, daemons, notices) add their steps to demo_setup and
# demo_start, each guarded so that a second run changes nothing.
demo_env() {
	# demo.env: shell-sourceable; key names never change once published.
	local f="$demo/demo.env"
	{
		echo "# govmail demo: source this file ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
		echo "GOVMAIL_CONF=$demo/govmail.conf"
		echo "GOVMAILCTL=$top/tools/govmailctl"
		echo "GOVMAIL_DOMAIN=$GOVMAIL_DOMAIN"
		echo "GOVMAIL_HOST=$GOVMAIL_HOST"
		echo "GOVMAIL_TLS_NAME=localhost"
		# Parts append their keys (KEY=value lines) to demo/env.d/*.env.
		cat "$demo"/env.d/*.env 2>/dev/null || true
	} > "$f.tmp"
	mv "$f.tmp" "$f"
}

demo_setup() {
	mkdir -p "$demo"
	chmod 700 "$demo"
	# Each part's demo step lives in demo.d/NN-part.sh, sourced in order with
	# this script's variables and functions (say, demo, top, GOVMAIL_*).
	# A step must be idempotent: it checks what exists before making it.
	local step
	for step in "$top"/demo.d/*.sh; do
		[ -f "$step" ] || continue
		. "$step"
	done
	demo_env
}

# The daemons' workers never run as root, and the store's files belong to
# the one user every store process runs as.  So when quickstart runs as
# root, the demo is made and run by an unprivileged system user, as a
# production installation would be; run by anyone else, it is theirs.
DEMO_USER=govmail

demo_grant_traverse() {
	# The demo user must reach the checkout's programs: give it search
	# (x) permission, and only that, on every folder above that lacks it.
	local d=$1
	while [ -n "$d" ] && [ "$d" != / ]; do
		if ! setpriv --reuid="$DEMO_USER" --regid="$DEMO_USER" \
			--init-groups test -x "$d"; then
			setfacl -m "u:$DEMO_USER:x" "$d"
		fi
		d=$(dirname "$d")
	done
}

demo_setup_as_user() {
	if [ "$(id -u)" -ne 0 ]; then
		demo_setup
		return
	fi
	if ! id -u "$DEMO_USER" >/dev/null 2>&1; then
		say "creating system user $DEMO_USER for the demo"
		useradd --system --user-group --home-dir /nonexistent \
			--no-create-home --shell /usr/sbin/nologin "$DEMO_USER"
	fi
	mkdir -p "$demo"
	chown -R "$DEMO_USER:$DEMO_USER" "$demo"
	chmod 700 "$demo"
	demo_grant_traverse "$top"
	setpriv --reuid="$DEMO_USER" --regid="$DEMO_USER" --init-groups \
		env HOME="$demo" "$top/quickstart.sh" __demo
}

demo_stop() {
	local f pid
	for f in "$demo"/run/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" && say "stopped $(basename "$f" .pid) (pid $pid)"
		fi
		rm -f "$f"
	done
}

run_tests() {
	local rc=0 log pass fail
	make -j"$(nproc)" check || rc=$?
	log=tests/test-suite.log
	if [ -f "$log" ]; then
		pass=$(sed -n 's/^# PASS: *\([0-9]*\)/\1/p' "$log" | head -1)
		fail=$(awk '/^# (FAIL|ERROR|XPASS): */ { n += $3 } END { print n + 0 }' "$log")
		[ "$rc" -ne 0 ] && [ "${fail:-0}" -eq 0 ] && fail=1
		echo "${pass:-0} passed, ${fail:-0} failed"
	else
		echo "0 passed, 1 failed"
		rc=1
	fi
	return "$rc"
}

case "${1:-start}" in
start)
	install_packages
	build
	demo_setup_as_user
	say "demo ready: source demo/demo.env"
	;;
__demo)
	# Internal: the demo steps, run as the demo user (see above).
	demo_setup
	;;
test)
	install_packages
	build
	run_tests
	;;
stop)
	demo_stop
	;;
*)
	echo "usage: $0 [start|test|stop]" >&2
	exit 2
	;;
esac
