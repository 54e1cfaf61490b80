#!/usr/bin/env bash
# run-ca.sh - the CA benchmarks of issue 3, with `openssl x509 -req`
# issuing the same profile measured in the same run as the reference.
# Not a test.
#
#   bench/run-ca.sh [BUILD_DIR] [SCRATCH_DIR]
#
# BUILD_DIR defaults to the checkout (quickstart builds in place); SCRATCH
# defaults to bench/out/ca-scratch (on the disk a real CA would use: the
# durable figures include its fsyncs).  Sets up a scratch store, citizen
# accounts and a CA as the e2e tests do (govmailctl, govmail-ca init),
# then measures:
#   1. issuance from pre-generated P-256 CSRs (citizen profile): the single
#      API (govca_issue_csr, each durable on its own) and the batch API
#      (govca_batch_begin/commit, 256 per commit), 1 and 2 processes; and
#      `govmail-ca issue-batch` end to end (store look-up, files written,
#      serial recorded on the account);
#   2. --generate + PKCS#12 (govca_issue_generate), single and batch;
#   3. the reference: a loop of `openssl x509 -req` with the same
#      extensions (an -extfile), the same subject and key type, and a loop
#      of genpkey + req + x509 -req + pkcs12 for the --generate figure;
#   4. OCSP responses/s from `govmail-ca serve` under C concurrent
#      keep-alive HTTP POST clients (bench/ocsp_load), good, revoked and
#      unknown serials in turn, each request with its own nonce;
#   5. the time to build a CRL with 100,000 revoked entries (the records
#      are added in transactions of 1,000; only the build is timed), and a
#      revocation (durable + CRL rebuilt) at that size.
# Prints one line per figure and saves them in bench/out/ca-<date>.txt.
# About 2-3 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
scratch=${2:-$here/out/ca-scratch}
ca="$build/ca/govmail-ca"
ctl="$build/tools/govmailctl"
cb="$build/bench/ca_bench"
load="$build/bench/ocsp_load"
for p in "$ca" "$ctl" "$cb" "$load"; do
	[ -x "$p" ] || { echo "run-ca.sh: $p not built (make first)" >&2; exit 2; }
done
out="$here/out/ca-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
serve_pid=
cleanup() {
	if [ -n "$serve_pid" ]; then
		kill "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
exec > >(tee "$out") 2>&1

# t0=$(clock); ...; rate N "$t0" LABEL: prints N/elapsed.
clock() { date +%s.%N; }
rate() {
	awk -v n="$1" -v t0="$2" -v t1="$(clock)" -v what="$3" \
	    'BEGIN { printf "%s: %d in %.2f s = %.0f/s\n", what, n, t1 - t0, n / (t1 - t0) }'
}

echo "# CA benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}'), $(openssl version | cut -d' ' -f1-2)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores)"

cd "$scratch"
printf 'bench CA passphrase\n' > pass
chmod 600 pass
cat > govmail.conf <<EOF
[store]
path = store
password_opslimit = 1
password_memlimit = 8M
[ca]
dir = ca
base_url = $base
listen = 127.0.0.1:$port
passphrase_file = pass
EOF
"$ctl" -c govmail.conf domain add bench.example >/dev/null
addrs=()
for i in 1 2 3 4; do
	printf 'bench-password\n' | "$ctl" -c govmail.conf user add \
	    "citizen$i@bench.example" --class citizen --name "Zhang Wei$i" \
	    --verified >/dev/null
	addrs+=("citizen$i@bench.example")
done
"$ca" -c govmail.conf init >/dev/null
echo "# CA: $(openssl x509 -in ca/issuing.crt -noout -text | grep -o 'NIST CURVE: P-[0-9]*' | head -1) issuing key; citizen profile, P-256 end-entity keys"

echo "## 1. issuance from CSRs (citizen, P-256; CSRs made before the clock starts)"
"$cb" -c govmail.conf issue csr 1000 1 "${addrs[@]}"
"$cb" -c govmail.conf issue csr 1000 2 "${addrs[@]}"
"$cb" -c govmail.conf issue csr-batch 10000 1 "${addrs[@]}"
"$cb" -c govmail.conf issue csr-batch 10000 2 "${addrs[@]}"
mkdir csrs certs
"$cb" -c govmail.conf csrs csrs 2000
for i in $(seq 0 1999); do
	echo "citizen ${addrs[$((i % 4))]} csrs/csr-$i.pem certs/$i.pem"
done > batch.lines
t0=$(clock)
"$ca" -c govmail.conf issue-batch < batch.lines > batch.out 2> batch.err
n=$(wc -l < batch.out)
rate "$n" "$t0" "govmail-ca issue-batch (CLI end to end, CSR files in, PEM files out)"
[ "$n" -eq 2000 ] || { echo "issue-batch issued $n of 2000" >&2; exit 1; }

echo "## 2. --generate: key made here + PKCS#12 (AES-256, PBKDF2)"
"$cb" -c govmail.conf issue generate 500 1 "${addrs[@]}"
"$cb" -c govmail.conf issue generate 500 2 "${addrs[@]}"
"$cb" -c govmail.conf issue generate-batch 3000 1 "${addrs[@]}"
"$cb" -c govmail.conf issue generate-batch 3000 2 "${addrs[@]}"

echo "## 3. reference: openssl (one process per certificate, plain key file, no database)"
openssl pkey -in ca/issuing.key -passin file:pass -out plain.key 2>/dev/null
"$ca" -c govmail.conf issue --profile citizen "${addrs[0]}" \
    --csr csrs/csr-0.pem --out ours.pem >/dev/null 2>&1
subj=$(openssl x509 -in ours.pem -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
subj="/$(echo "$subj" | awk -F, '{ for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? "/" : "") }')"
cat > ext.cnf <<EOF
[citizen]
subjectAltName = email:${addrs[0]}
keyUsage = critical, digitalSignature, keyAgreement
basicConstraints = critical, CA:FALSE
extendedKeyUsage = emailProtection
certificatePolicies = 2.23.140.1.5.4.3
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:$base/crl/issuing.crl
authorityInfoAccess = caIssuers;URI:$base/ca/issuing.crt, OCSP;URI:$base/ocsp
EOF
mkdir ref
issue_ref() {
	openssl x509 -req -in "$1" -CA ca/issuing.crt -CAkey plain.key \
	    -days 730 -sha256 -extfile ext.cnf -extensions citizen \
	    -subj "$subj" -out "$2" 2>/dev/null
}
issue_ref csrs/csr-1.pem ref/check.pem
# The reference must be the same certificate but for key, serial, dates.
profile() {
	openssl x509 -in "$1" -noout -subject -ext subjectAltName,keyUsage,basicConstraints,extendedKeyUsage,certificatePolicies,authorityKeyIdentifier,crlDistributionPoints,authorityInfoAccess
	openssl x509 -in "$1" -noout -text | grep -E '^ +(X509v3|Authority|Signature Alg|Public-Key|NIST)' | sort -u
}
[ "$(profile ours.pem)" = "$(profile ref/check.pem)" ] ||
	{ echo "the openssl reference differs from our profile" >&2; exit 1; }
t0=$(clock)
for i in $(seq 0 299); do
	issue_ref "csrs/csr-$i.pem" "ref/$i.pem"
done
rate 300 "$t0" "reference openssl x509 -req, same profile from CSRs"
t0=$(clock)
for i in $(seq 0 99); do
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	    -out ref/k.pem 2>/dev/null
	openssl req -new -key ref/k.pem -subj /CN=x -out ref/r.pem
	issue_ref ref/r.pem ref/c.pem
	openssl pkcs12 -export -inkey ref/k.pem -in ref/c.pem \
	    -certfile ca/issuing.crt -keypbe AES-256-CBC -certpbe AES-256-CBC \
	    -macalg sha256 -iter 10000 -passout pass:bench-p12-password \
	    -out ref/p.p12
done
rate 100 "$t0" "reference openssl genpkey + req + x509 -req + pkcs12 -export (AES-256)"

echo "## 4. OCSP: govmail-ca serve, POST /ocsp over keep-alive HTTP/1.1"
"$ca" -c govmail.conf issue --profile citizen "${addrs[1]}" \
    --csr csrs/csr-2.pem --out revoked.pem >/dev/null 2>&1
"$ca" -c govmail.conf revoke \
    "$(openssl x509 -in revoked.pem -noout -serial | cut -d= -f2)" \
    --reason keyCompromise >/dev/null
mkdir ocsp
for i in $(seq 0 9); do
	openssl ocsp -issuer ca/issuing.crt -cert "certs/$i.pem" \
	    -reqout "ocsp/good-$i.der" 2>/dev/null
	openssl ocsp -issuer ca/issuing.crt -cert revoked.pem \
	    -reqout "ocsp/revoked-$i.der" 2>/dev/null
	openssl ocsp -issuer ca/issuing.crt -serial "0x7a$(openssl rand -hex 15)" \
	    -reqout "ocsp/unknown-$i.der" 2>/dev/null
done
for threads in 2 4; do
	"$ca" -c govmail.conf serve --threads "$threads" 2> serve.log &
	serve_pid=$!
	for _ in $(seq 50); do
		curl -sf -o /dev/null "$base/ca/root.crt" && break
		sleep 0.1
	done
	# The answers are right before they are counted.
	for kind in good revoked unknown; do
		st=$(openssl ocsp -reqin "ocsp/$kind-0.der" -url "$base/ocsp" \
		    -CAfile ca/root.crt -VAfile ca/ocsp.crt -resp_text 2>&1 |
		    awk '/Cert Status:/ {print $3}')
		[ "$st" = "$kind" ] || { echo "OCSP $kind answered '$st'" >&2; exit 1; }
	done
	echo "# serve --threads $threads (answers checked: good, revoked, unknown)"
	for conns in 16 64 256; do
		"$load" 127.0.0.1 "$port" "$conns" 8 ocsp/*.der
	done
	kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
	serve_pid=
done

echo "## 5. CRL with 100,000 revoked entries"
"$cb" -c govmail.conf revoke-fill 100000
"$cb" -c govmail.conf crl 3
cat ca/root.crt ca/issuing.crt > chain.pem
v=$(openssl crl -inform DER -in ca/issuing.crl -CAfile chain.pem -noout 2>&1)
case "$v" in
*"verify OK"*) ;;
*) echo "the CRL does not verify: $v" >&2; exit 1 ;;
esac
n=$(openssl crl -inform DER -in ca/issuing.crl -noout -text | grep -c 'Serial Number:')
echo "# the CRL verifies with openssl and lists $n certificates"
"$cb" -c govmail.conf revoke 3 "${addrs[2]}"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cd /
rm -rf "$scratch"
echo "# saved in $out"
