#!/usr/bin/env bash
# The project's test command (README "Quick start"): starts Postgres with the test role
# when needed, builds everything (including the postgres backend's cdylib that the
# plugin test loads), and runs every test of the workspace with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
sh tests/pg-setup.sh >/dev/null
cargo build --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
