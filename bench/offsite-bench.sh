#!/usr/bin/env bash
# Off-site repository benchmark (not a test): in one run, the same sealed backup (one large
# incompressible dump file like a compressed participant dump, plus small files)
#   1. uploaded to a directory repository and to an S3 server (moto, on loopback), and
#   2. downloaded back from each with every file's sha256 checked (what a restore adds),
# printing the S3 / directory throughput ratios and the peak RSS of the process during the
# S3 upload (target: bounded, under 100 MB whatever the dump size).
#
# Usage:  bench/offsite-bench.sh                     (1 GB)
#         BENCH_SIZE_MB=100 bench/offsite-bench.sh   (quick)
# Env: BENCH_SIZE_MB (default 1024), CARGO_TARGET_DIR (default /var/tmp/splice-dr-target),
#      BENCH_TMPDIR (default /var/tmp). Needs python3 with moto[server] (installed if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
WORK="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sdr-offsite-bench.XXXXXX")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
MOTO_PID=""
cleanup() {
    [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 -c 'import moto.server' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check 'moto[server]==5.2.1'
cargo build --release -p splice-dr --example offsite_bench >/dev/null
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
done
curl -s -X PUT "http://127.0.0.1:$PORT/sdr-bench" >/dev/null

echo "offsite benchmark: ${SIZE_MB} MB, $(nproc) cores, moto $(python3 -c 'import moto; print(moto.__version__)'), $(date -u +%FT%TZ)"
AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    "$CARGO_TARGET_DIR/release/examples/offsite_bench" "$WORK" "$SIZE_MB" \
    "http://127.0.0.1:$PORT" sdr-bench
echo "moto server peak RSS: $(grep VmHWM /proc/$MOTO_PID/status | awk '{print $2/1024 " MiB"}') (holds every object in memory)"
