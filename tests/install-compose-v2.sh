#!/usr/bin/env bash
# Installs Docker Compose v2 (the `docker compose` CLI plugin) from Debian's own archive when
# the engine's CLI has none. The compose tests run the real Splice bundle's compose.yaml,
# whose top-level `name:` the bookworm `docker-compose` (v1.29) refuses; bookworm has no v2
# package, trixie's `docker-compose` package is v2 and its binary is statically built (it
# needs only libc6 >= 2.34; bookworm has 2.36). Only the plugin binary is unpacked, into
# /usr/local/lib/docker/cli-plugins/ (a directory the docker CLI searches), so bookworm's
# packages stay as they are.
#
# Trust: the trixie InRelease file is checked with gpgv against Debian's archive keyring
# (debian-archive-keyring, which bookworm ships with the trixie keys), Packages.xz against
# the sha256 InRelease gives, and the .deb against the sha256 Packages.xz gives.
#
# Env: SPLICE_DR_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      SPLICE_DR_COMPOSE_SUITE (default trixie).
set -Eeuo pipefail

docker compose version >/dev/null 2>&1 && exit 0

mirror="${SPLICE_DR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${SPLICE_DR_COMPOSE_SUITE:-trixie}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
dest=/usr/local/lib/docker/cli-plugins
arch="$(dpkg --print-architecture)"

die() {
    printf 'install-compose-v2: error: %s\n' "$*" >&2
    exit 1
}
for tool in curl gpgv xz dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install curl gpgv xz-utils dpkg)"
done
[ -f "$keyring" ] || die "no Debian archive keyring at $keyring (apt-get install debian-archive-keyring)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() { curl -fsS --retry 3 -m 300 -o "$2" "$1" || die "cannot download $1"; }

echo "install-compose-v2: docker compose v2 from Debian $suite ($mirror)"
fetch "$mirror/dists/$suite/InRelease" "$work/InRelease"
gpgv --keyring "$keyring" --output "$work/Release" "$work/InRelease" 2>"$work/gpgv.log" ||
    { cat "$work/gpgv.log" >&2; die "the $suite InRelease signature does not verify"; }

index="main/binary-$arch/Packages.xz"
want_index="$(awk -v f="$index" '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3==f {print $1}' "$work/Release")"
[ -n "$want_index" ] || die "$index is not listed in the $suite Release file"
fetch "$mirror/dists/$suite/$index" "$work/Packages.xz"
echo "$want_index  $work/Packages.xz" | sha256sum -c --quiet - || die "$index does not match its Release checksum"

# The docker-compose stanza: its file name and sha256.
read -r file want_deb < <(xz -dc "$work/Packages.xz" | awk '
    /^Package: /{p = ($2 == "docker-compose")}
    p && /^Filename: /{f = $2}
    p && /^SHA256: /{h = $2}
    /^$/ && p && f != "" {print f, h; exit}')
[ -n "${file:-}" ] && [ -n "${want_deb:-}" ] || die "no docker-compose package in $suite"
fetch "$mirror/$file" "$work/compose.deb"
echo "$want_deb  $work/compose.deb" | sha256sum -c --quiet - || die "$file does not match its Packages checksum"

dpkg-deb -x "$work/compose.deb" "$work/root"
plugin="$work/root/usr/libexec/docker/cli-plugins/docker-compose"
[ -x "$plugin" ] || die "$file holds no usr/libexec/docker/cli-plugins/docker-compose"
install -d -m 0755 "$dest"
install -m 0755 "$plugin" "$dest/docker-compose"
docker compose version || die "docker compose does not run after installing $dest/docker-compose"
