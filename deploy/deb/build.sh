#!/usr/bin/env bash
# Builds the splice-dr Debian package from a splice-dr binary that is already built:
#
#   deploy/deb/build.sh BINARY [OUTDIR]      # prints the path of the .deb on stdout
#   e.g. cargo build --release -p splice-dr && deploy/deb/build.sh target/release/splice-dr
#
# Build the binary WITHOUT the `demo` feature: the script refuses a binary that carries the
# simulator. The man page and the shell completions are generated here by the binary itself
# (`splice-dr man`, `splice-dr completions SHELL`), so they match it. No network, no
# debhelper or cargo-deb: dpkg-deb from a staged tree, as root or not (owners are set to
# root in the archive; the postinst makes the user and sets the config's group).
#
# Installs: /usr/bin/splice-dr, /usr/lib/systemd/system/splice-dr.service (not enabled),
# /usr/share/man/man1/splice-dr.1.gz, bash/zsh/fish completions in the Debian paths,
# /etc/splice-dr/splice-dr.toml (conffile), /usr/share/doc/splice-dr/{README.md,docs/,
# examples/, copyright}. SOURCE_DATE_EPOCH, when set, fixes every file's mtime.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
die() {
    printf 'deploy/deb/build.sh: error: %s\n' "$*" >&2
    exit 1
}

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then die "usage: deploy/deb/build.sh BINARY [OUTDIR]"; fi
bin="$1"
out="${2:-.}"
[ -x "$bin" ] || die "$bin is not an executable file (build it: cargo build --release -p splice-dr)"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"

# `splice-dr 0.1.0 (3f2a1bc 2026-12-06)` -> 0.1.0
version_line="$("$bin" --version)" || die "$bin --version failed"
version="$(printf '%s\n' "$version_line" | awk 'NR == 1 { print $2 }')"
[[ "$version" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "cannot read a version from '$version_line'"
# Only a production build carries the refusal `splice-dr demo` prints there (src/main.rs);
# a demo build would start a simulator, so it is looked for, not run.
if ! grep -aq 'built without the demo' "$bin"; then
    die "$bin was built with the demo feature: build it without (cargo build --release -p splice-dr)"
fi
arch="$(dpkg --print-architecture)"
# The newest glibc symbol version the binary links against is the libc6 it needs.
glibc="$(grep -aoE 'GLIBC_2\.[0-9]+(\.[0-9]+)?' "$bin" | sed 's/GLIBC_//' | sort -Vu | tail -n1)"
[ -n "$glibc" ] || die "$bin does not link glibc: not the binary this package expects"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
doc="$pkg/usr/share/doc/splice-dr"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" \
    "$pkg/usr/share/man/man1" "$pkg/usr/share/bash-completion/completions" \
    "$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d" \
    "$doc/examples" "$doc/docs" "$pkg/etc/splice-dr"

install -m 0755 "$bin" "$pkg/usr/bin/splice-dr"
# Debian ships binaries stripped of debug info (policy 10.1); strip is binutils', there
# wherever Rust links.
strip --strip-unneeded "$pkg/usr/bin/splice-dr" || die "strip failed (apt-get install binutils)"
install -m 0644 "$root/deploy/splice-dr.service" "$pkg/usr/lib/systemd/system/"
"$bin" man | gzip -9n >"$pkg/usr/share/man/man1/splice-dr.1.gz"
"$bin" completions bash >"$pkg/usr/share/bash-completion/completions/splice-dr"
"$bin" completions zsh >"$pkg/usr/share/zsh/vendor-completions/_splice-dr"
"$bin" completions fish >"$pkg/usr/share/fish/vendor_completions.d/splice-dr.fish"
install -m 0644 "$here/splice-dr.toml" "$pkg/etc/splice-dr/splice-dr.toml"
# README.md uncompressed: the unit's Documentation= names it, and its links to docs/ work.
install -m 0644 "$root/README.md" "$doc/README.md"
install -m 0644 "$root"/docs/*.md "$doc/docs/"
install -m 0644 "$root"/config/*.toml "$here/compose-docker-group.conf" "$doc/examples/"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: splice-dr

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$doc/copyright"

for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$pkg/DEBIAN/$script"
done
echo /etc/splice-dr/splice-dr.toml >"$pkg/DEBIAN/conffiles"
installed_kb="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: splice-dr
Version: $version
Architecture: $arch
Maintainer: splice-dr maintainers <splice-dr@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), adduser, procps
Recommends: postgresql-client
Suggests: docker.io
Section: admin
Priority: optional
Description: backups and automatic recovery for Splice validator nodes
 splice-dr takes verified backups of a Splice / Canton Network validator's
 databases and restores them without losing the current data: the databases
 being replaced are kept until the restored ones are proven. A daemon (systemd
 unit splice-dr.service, not enabled on install) watches the node and runs the
 recovery flows its rules allow; the CLI drives it over a Unix socket.
 .
 postgresql-client provides pg_dump and pg_restore for the bare-Postgres
 backend; the docker-compose backend needs the Docker engine instead.
CONTROL

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
mkdir -p "$out"
deb="$out/splice-dr_${version}_${arch}.deb"
# zstd: fast to build and read by dpkg >= 1.21.18 (Debian 12, Ubuntu 22.04).
dpkg-deb --root-owner-group -Zzstd --build "$pkg" "$deb" >/dev/null
printf '%s\n' "$deb"
