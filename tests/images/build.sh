#!/usr/bin/env bash
# Builds the Docker images of the docker-compose tests, with no registry (nothing is pulled):
#
#   splice-dr-test/pg-rootfs:15        Debian bookworm minbase + postgresql-15 + procps, made with
#                                      mmdebstrap and `docker import`ed (intermediate)
#   splice-dr-test/pg:15               + docker-entrypoint.sh, http-probe (tests/images/pg)
#   splice-dr-test/splice-sim:latest   + the splice-sim binary (docker create/cp/commit)
#
# Usage: tests/images/build.sh [SPLICE_SIM_BINARY]
#   binary: first argument, else $SPLICE_SIM_BIN, else $CARGO_TARGET_DIR/debug/splice-sim
#   (CARGO_TARGET_DIR defaults to /var/tmp/splice-dr-target).
# Env: SPLICE_DR_IMAGES_DIR (cache, default /var/tmp/splice-dr-images),
#      SPLICE_DR_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      SPLICE_DR_DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security).
#
# Idempotent and quiet: each image is rebuilt only when its recipe changed (a sha256 label
# on the image: splice-dr.rootfs-sha256, splice-dr.pg-sha256, splice-dr.sim-sha256 +
# splice-dr.base-id); the rootfs tarball is cached in the cache dir. Progress goes to stderr
# only when something is built; stdout gets the usable image tags, one per line.
# Concurrent runs serialize on a lock file. Needs root (apt-get, mmdebstrap) and Docker.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SPLICE_DR_IMAGES_DIR:-/var/tmp/splice-dr-images}"
mirror="${SPLICE_DR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${SPLICE_DR_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
target_dir="${CARGO_TARGET_DIR:-/var/tmp/splice-dr-target}"
sim_bin="${1:-${SPLICE_SIM_BIN:-$target_dir/debug/splice-sim}}"

ROOTFS_TAG=splice-dr-test/pg-rootfs:15
PG_TAG=splice-dr-test/pg:15
SIM_TAG=splice-dr-test/splice-sim:latest

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
sha256_of_stdin() { sha256sum | cut -d' ' -f1; }
label_of() { # label_of IMAGE LABEL -> value, or empty when the image or label is missing
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}
# run_logged NAME CMD...: run quietly into a log file; show its tail when it fails.
run_logged() {
    local name="$1" logf="$cache/logs/$1.log"
    shift
    if ! "$@" >"$logf" 2>&1; then
        log "$name failed; last lines of $logf:"
        tail -n 40 "$logf" >&2
        exit 1
    fi
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
[ -f "$sim_bin" ] || die "no splice-sim binary at $sim_bin (build it: cargo build -p splice-sim," \
    "or pass its path as the first argument / SPLICE_SIM_BIN)"

mkdir -p "$cache/logs"
exec 9>"$cache/build.lock"
flock 9

# ---- 1. rootfs: Debian bookworm minbase + postgresql-15 --------------------------------------
# procps: `kill`, which splice-dr uses to end a cancelled tool's process group; the daemon
# image (deploy/image) installs the splice-dr package, which depends on it, on this rootfs.
packages=postgresql-15,procps
# Hooks run by mmdebstrap on the host with the rootfs in "$1".
# Before the packages: the `postgres` account gets the official image's fixed uid/gid 999
# (postgresql-common then keeps it), and no default `main` cluster is created.
# shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's shell
essential_hook='set -e
echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >>"$1/etc/passwd"
echo "postgres:x:999:" >>"$1/etc/group"
mkdir -p "$1/etc/postgresql-common/createcluster.d"
echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.d/splice-dr.conf"'
# After them: the validator user splice (1001:1001), the data directory, the init-script
# directory; drop any cluster that a package made anyway. (mmdebstrap empties /run: the
# socket directory is made in pg/Dockerfile.)
# shellcheck disable=SC2016
customize_hook='set -e
chroot "$1" pwconv
chroot "$1" grpconv
chroot "$1" groupadd --gid 1001 splice
chroot "$1" useradd --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin splice
rm -rf "$1/etc/postgresql/15" "$1/var/lib/postgresql/15"
install -d -o 999 -g 999 -m 0700 "$1/var/lib/postgresql/data"
install -d -m 0755 "$1/docker-entrypoint-initdb.d"'
mm_args=(
    --variant=minbase
    --include="$packages"
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --essential-hook="$essential_hook"
    --customize-hook="$customize_hook"
    bookworm
)
sources=(
    "deb $mirror bookworm main"
    "deb $mirror bookworm-updates main"
    "deb $security_mirror bookworm-security main"
)
rootfs_sha="$(printf '%s\n' v1 "${mm_args[@]}" "${sources[@]}" | sha256_of_stdin)"
tarball="$cache/pg15-bookworm-${rootfs_sha:0:16}.tar"

if [ "$(label_of "$ROOTFS_TAG" splice-dr.rootfs-sha256)" != "$rootfs_sha" ]; then
    if [ ! -s "$tarball" ]; then
        if ! command -v mmdebstrap >/dev/null; then
            [ "$(id -u)" = 0 ] || die "mmdebstrap is missing and this is not root: apt-get install mmdebstrap"
            log "installing mmdebstrap (apt-get)"
            run_logged apt-get-update apt-get update -qq
            run_logged apt-get-install env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends mmdebstrap
        fi
        log "building the bookworm + $packages rootfs with mmdebstrap (about a minute)"
        start=$SECONDS
        rm -f "$cache"/pg15-bookworm-*.tar "$cache"/pg15-bookworm-*.tar.tmp
        run_logged mmdebstrap mmdebstrap "${mm_args[@]}" "$tarball.tmp.tar" "${sources[@]}"
        mv "$tarball.tmp.tar" "$tarball"
        log "rootfs tarball $tarball ($(du -m "$tarball" | cut -f1) MiB) in $((SECONDS - start)) s"
    fi
    log "importing $tarball as $ROOTFS_TAG"
    start=$SECONDS
    run_logged docker-import docker import \
        --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL splice-dr.rootfs-sha256=$rootfs_sha" \
        --change 'CMD ["bash"]' \
        "$tarball" "$ROOTFS_TAG"
    log "imported $ROOTFS_TAG in $((SECONDS - start)) s"
fi

# ---- 2. splice-dr-test/pg:15 ---------------------------------------------------------------
pg_sha="$(cat <(echo "$rootfs_sha") "$here/pg/Dockerfile" "$here/pg/docker-entrypoint.sh" \
    "$here/pg/http-probe" | sha256_of_stdin)"
if [ "$(label_of "$PG_TAG" splice-dr.pg-sha256)" != "$pg_sha" ]; then
    log "building $PG_TAG"
    start=$SECONDS
    run_logged docker-build-pg env DOCKER_BUILDKIT=0 docker build --pull=false --force-rm \
        --label "splice-dr.pg-sha256=$pg_sha" -t "$PG_TAG" "$here/pg"
    log "built $PG_TAG in $((SECONDS - start)) s"
    docker image prune -f --filter "label=splice-dr.pg-sha256" >/dev/null 2>&1 || true
fi

# ---- 3. splice-dr-test/splice-sim:latest -----------------------------------------------------
# pg:15 + /usr/local/bin/splice-sim, made with create + cp + commit: one layer in ~3 s, where
# the classic builder spends ~13 s committing one layer per instruction (fuse-overlayfs).
# The entrypoint stays docker-entrypoint.sh, which execs any command other than `postgres`.
sim_changes=(
    'USER 1001:1001'
    'ENTRYPOINT ["docker-entrypoint.sh"]'
    'CMD ["splice-sim", "--help"]'
)
sim_sha="$(sha256sum "$sim_bin" | cut -d' ' -f1)"
pg_id="$(docker image inspect --format '{{.Id}}' "$PG_TAG")"
sim_recipe="$(printf '%s\n' v1 "${sim_changes[@]}" | sha256_of_stdin)"
if [ "$(label_of "$SIM_TAG" splice-dr.sim-sha256)" != "$sim_sha" ] ||
    [ "$(label_of "$SIM_TAG" splice-dr.base-id)" != "$pg_id" ] ||
    [ "$(label_of "$SIM_TAG" splice-dr.recipe-sha256)" != "$sim_recipe" ]; then
    log "building $SIM_TAG from $sim_bin"
    start=$SECONDS
    ctr="$(docker create "$PG_TAG")" # never started
    trap 'docker rm -f "$ctr" >/dev/null 2>&1 || true' EXIT
    run_logged docker-cp-sim docker cp "$sim_bin" "$ctr:/usr/local/bin/splice-sim"
    changes=()
    for c in "${sim_changes[@]}"; do changes+=(--change "$c"); done
    run_logged docker-commit-sim docker commit "${changes[@]}" \
        --change "LABEL splice-dr.sim-sha256=$sim_sha splice-dr.base-id=$pg_id splice-dr.recipe-sha256=$sim_recipe" \
        "$ctr" "$SIM_TAG"
    docker rm -f "$ctr" >/dev/null
    trap - EXIT
    log "built $SIM_TAG in $((SECONDS - start)) s"
    # The replaced image stays behind untagged; drop dangling ones we labelled.
    docker image prune -f --filter "label=splice-dr.sim-sha256" >/dev/null 2>&1 || true
fi

printf '%s\n' "$PG_TAG" "$SIM_TAG"
