#!/usr/bin/env bash
# run-store.sh - the store benchmarks of issue 2, with the disk's fsync rate
# measured in the same run as the physical reference.  Not a test.
#
#   bench/run-store.sh [BUILD_DIR] [SCRATCH_DIR]
#
# BUILD_DIR defaults to the checkout (quickstart builds in place); SCRATCH
# defaults to bench/out/scratch (on the same disk as a real store would be).
# Prints one line per figure and saves them in bench/out/store-<date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
scratch=${2:-$here/out/scratch}
fs="$build/bench/fsync_rate"
sb="$build/bench/store_bench"
out="$here/out/store-$(date -u +%Y%m%d-%H%M%S).txt"
mkdir -p "$here/out"
rm -rf "$scratch"; mkdir -p "$scratch"
exec > >(tee "$out") 2>&1

echo "# store benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -h "$scratch" | awk 'NR==2 {print $1}')"
echo "## physical reference: fdatasync rate of the disk under $scratch"
"$fs" "$scratch" 5 1
"$fs" "$scratch" 5 4

echo "## durable deliveries of 10 KB messages (each returns after commit)"
"$sb" deliver "$scratch/d1" 1 3000 10240
"$sb" deliver "$scratch/d4" 4 3000 10240
rm -rf "$scratch/d1" "$scratch/d4"

echo "## one 10 KB message to 100,000 mailboxes (1,000 recipients per transaction)"
"$sb" fanout "$scratch/f" 100000 1000 10240
rm -rf "$scratch/f"
echo "## the same as a signed notice: the report records its recipients in the same transactions"
"$sb" notice "$scratch/n" 100000 1000 10240
rm -rf "$scratch/n"

echo "## open and recovery after SIGKILL with 1,000,000 messages stored"
"$sb" fill "$scratch/r" 1000000 100
"$sb" crash "$scratch/r" & pid=$!
sleep 3
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
"$sb" open "$scratch/r"
"$sb" open "$scratch/r"
rm -rf "$scratch"
echo "# saved in $out"
