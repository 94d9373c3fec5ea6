#!/usr/bin/env bash
# The project's test command (README "Quick start"): installs and starts what the tests
# need (tests/setup.sh: Debian packages, moto, Postgres with the test role), builds
# everything (including the postgres backend's cdylib that the plugin test loads), and
# runs every test of the workspace with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
# Debian packages, moto in its virtual environment, Postgres and the test role.
bash tests/setup.sh >/dev/null
# packaging_e2e packages and installs a production binary (no `demo`): built first and
# copied aside, so that the demo build below leaves the binary the other tests run newest.
cargo build -p splice-dr --bin splice-dr
install -D -m 0755 "$CARGO_TARGET_DIR/debug/splice-dr" "$CARGO_TARGET_DIR/package/splice-dr"
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
