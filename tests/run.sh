#!/usr/bin/env bash
# The project's test command (README "Quick start"): starts Postgres with the test role
# when needed, builds everything (including the postgres backend's cdylib that the
# plugin test loads), and runs every test of the workspace with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
sh tests/pg-setup.sh >/dev/null
# The off-site repository tests run moto, a real S3-compatible server, on loopback.
python3 -c 'import moto.server' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check 'moto[server]==5.2.1'
# `demo`: the binary the tests run carries the simulator (`splice-dr demo`, demo_e2e); an
# installed production build does not.
features=(--features splice-dr/demo,splice-dr-e2e/demo)
cargo build --workspace --all-targets "${features[@]}"
# The compose tests' images (Debian + Postgres 15, and splice-sim): built once, cached by
# tag and rebuilt only when their recipe or the splice-sim binary changes.
if docker info >/dev/null 2>&1; then
    bash tests/images/build.sh "$CARGO_TARGET_DIR/debug/splice-sim" >/dev/null
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace "${features[@]}" --no-fail-fast "$@"
else
    cargo test --workspace "${features[@]}" --no-fail-fast "$@"
fi
