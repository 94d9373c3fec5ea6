#!/usr/bin/env bash
# Assembles a docker-compose bundle for the tests in DEST: the real Splice bundle's files,
# unchanged (compose.yaml, its overlays, and env.defaults as .env), next to the stand-ins for
# the files the reference copy does not carry (tests/compose/bundle: start.sh, stop.sh,
# postgres-entrypoint.sh, nginx.conf and nginx/) and the test images (compose.override.yaml).
#
# Usage: tests/compose/assemble.sh DEST
# Env: SPLICE_REFERENCE_DIR — the Splice reference files (default: ../shared/splice next to
#      the repository, else /work/shared/splice); its compose/ directory is used.
set -Eeuo pipefail

die() {
    printf 'assemble.sh: error: %s\n' "$*" >&2
    exit 1
}
[ "$#" -eq 1 ] || die "usage: assemble.sh DEST"
dest="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

reference="${SPLICE_REFERENCE_DIR:-}"
if [ -z "$reference" ]; then
    for candidate in "$repo/../shared/splice" /work/shared/splice; do
        if [ -f "$candidate/compose/compose.yaml" ]; then
            reference="$candidate"
            break
        fi
    done
fi
[ -n "$reference" ] && [ -f "$reference/compose/compose.yaml" ] ||
    die "no Splice reference files (compose/compose.yaml): set SPLICE_REFERENCE_DIR"

mkdir -p "$dest"
for f in compose.yaml compose-migrate.yaml compose-restore-from-id.yaml compose-disable-auth.yaml; do
    install -m 0644 "$reference/compose/$f" "$dest/$f"
done
install -m 0644 "$reference/compose/env.defaults" "$dest/.env"
for f in start.sh stop.sh postgres-entrypoint.sh; do
    install -m 0755 "$here/bundle/$f" "$dest/$f"
done
install -m 0644 "$here/bundle/nginx.conf" "$here/bundle/compose.override.yaml" "$dest/"
mkdir -p "$dest/nginx"
install -m 0644 "$here/bundle/nginx/"*.conf "$dest/nginx/"
