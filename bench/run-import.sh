#!/usr/bin/env bash
# run-import.sh - bulk provisioning: `govmailctl user import` of N citizen
# accounts (a Chinese name and a resident ID number each), the same file
# again (every account present: what a rerun after a kill costs), and as
# the reference in the same run `govmailctl user add` one account at a
# time, as an operator without import would do it.  Not a test.
#
#   bench/run-import.sh [BUILD_DIR] [SCRATCH_DIR] [N]
#
# N defaults to 1,000,000 (about 2 minutes and 1.2 GB of store here).
# Prints one line per figure and saves them in bench/out/import-<date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
scratch=${2:-$here/out/import-scratch}
n=${3:-1000000}
ctl="$build/tools/govmailctl"
out="$here/out/import-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
exec > >(tee "$out") 2>&1
clock() { date +%s.%N; }

echo "# import benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}')"
conf="$scratch/govmail.conf"
printf '[store]\npath = store\n' > "$conf"
"$ctl" -c "$conf" domain add city.example
# N rows: address, class, name, a valid 18-character resident ID number.
python3 - "$n" > "$scratch/citizens.csv" <<'EOF'
import sys
n = int(sys.argv[1])
w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
print("address,class,name,resident_id")
for i in range(n):
    body = "110105%011d" % (19000101000 + i)
    s = sum(int(c) * x for c, x in zip(body, w))
    print(f"c{i}@city.example,citizen,公民{i},{body}{'10X98765432'[s % 11]}")
EOF
echo "## user import of $n citizens ($(du -h "$scratch/citizens.csv" | cut -f1) of CSV)"
# The store's size sampled while it runs: log files come and go.
echo 0 > "$scratch/peak"
( set +e; peak=0; while sleep 1; do
  s=$(du -sm "$scratch/store" 2>/dev/null | cut -f1)
  [ -n "$s" ] && [ "$s" -gt "$peak" ] && peak=$s && echo "$peak" > "$scratch/peak"
  done ) &
sampler=$!
t0=$(clock)
/usr/bin/time -f "%M" -o "$scratch/rss" "$ctl" -c "$conf" user import \
    "$scratch/citizens.csv"
t1=$(clock)
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
awk -v a="$t0" -v b="$t1" -v n="$n" -v rss="$(cat "$scratch/rss")" \
    -v peak="$(cat "$scratch/peak")" -v end="$(du -sm "$scratch/store" | cut -f1)" \
    'BEGIN { printf "import: %.1f s, %.0f accounts/s, peak RSS %.0f MiB, store %d MiB at the end (peak %d MiB)\n", b - a, n / (b - a), rss / 1024, end, peak }'

echo "## the same file again (all present)"
t0=$(clock)
"$ctl" -c "$conf" user import "$scratch/citizens.csv" 2> "$scratch/rerun.err"
t1=$(clock)
awk -v a="$t0" -v b="$t1" -v n="$n" -v e="$(grep -c . "$scratch/rerun.err" || true)" \
    'BEGIN { printf "rerun: %.1f s, %.0f records/s, %d lines on stderr\n", b - a, n / (b - a), e }'
head -3 "$scratch/rerun.err"

echo "## reference: user add, one process per account (100 accounts)"
t0=$(clock)
for i in $(seq 100); do
	printf 'pw-%d\n' "$i" | "$ctl" -c "$conf" user add "ref$i@city.example" \
	    --class citizen --name "参考$i" >/dev/null
done
t1=$(clock)
awk -v a="$t0" -v b="$t1" -v n="$n" \
    'BEGIN { per = (b - a) / 100; printf "user add: %.1f ms per account; %d accounts would take %.1f h\n", per * 1000, n, per * n / 3600 }'
rm -rf "$scratch"
