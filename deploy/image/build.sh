#!/usr/bin/env bash
# Builds the splice-dr daemon image from the splice-dr .deb, offline, FROM the locally
# built Debian base (tests/images/build.sh makes splice-dr-test/pg-rootfs:15):
#
#   deploy/image/build.sh DEB [TAG...]     # default tags: splice-dr:VERSION splice-dr:latest
#   e.g. bash tests/images/build.sh && deploy/image/build.sh "$(deploy/deb/build.sh BIN)"
#
# The image and the package therefore carry the same binary. The entrypoint is
# `splice-dr`, the command `daemon --log-format json`, the user 10001:10001 (deploy/k8s).
# Labels: org.opencontainers.image.version and .revision (the binary's commit). Env:
# SPLICE_DR_IMAGE_BASE overrides the base image. Prints the first tag on stdout.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() {
    printf 'deploy/image/build.sh: error: %s\n' "$*" >&2
    exit 1
}

[ "$#" -ge 1 ] || die "usage: deploy/image/build.sh DEB [TAG...]"
deb="$1"
shift
[ -f "$deb" ] || die "no package at $deb (build it: deploy/deb/build.sh BINARY)"
base="${SPLICE_DR_IMAGE_BASE:-splice-dr-test/pg-rootfs:15}"
docker image inspect "$base" >/dev/null 2>&1 ||
    die "base image $base is missing: build it with tests/images/build.sh (nothing is pulled)"
version="$(dpkg-deb -f "$deb" Version)"
tags=("$@")
[ "${#tags[@]}" -gt 0 ] || tags=("splice-dr:$version" splice-dr:latest)

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/Dockerfile"
cp "$deb" "$ctx/splice-dr.deb"
# The commit the binary names in `--version`: `splice-dr 0.1.0 (3f2a1bc 2026-12-06)`.
dpkg-deb -x "$deb" "$ctx/x"
revision="$("$ctx/x/usr/bin/splice-dr" --version | sed -n '1s/.*(\([^ ]*\) .*/\1/p')"
rm -rf "$ctx/x"

args=()
for t in "${tags[@]}"; do args+=(-t "$t"); done
if ! out="$(DOCKER_BUILDKIT=0 docker build --pull=false --force-rm --build-arg "BASE=$base" \
    --label "org.opencontainers.image.title=splice-dr" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    "${args[@]}" "$ctx" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 30 >&2
    die "docker build failed"
fi
printf '%s\n' "${tags[0]}"
