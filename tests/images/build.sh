#!/usr/bin/env bash
# Builds the Docker images of the docker-compose tests, with no registry (nothing is pulled):
#
#   splice-dr-test/pg-rootfs:15        Debian bookworm minbase + postgresql-15 + procps, made with
#                                      mmdebstrap and `docker import`ed (intermediate)
#   splice-dr-test/pg:15               + docker-entrypoint.sh, http-probe (tests/images/pg)
#   splice-dr-test/splice-sim:latest   + the splice-sim binary (docker create/cp/commit)
# and the stand-ins for the real Splice bundle's images (tests/compose/README.md), each a
# commit of splice-sim:latest or pg-rootfs with its own entrypoint:
#   splice-dr-test/validator-app:sim   splice-sim as the validator app, configured from the
#                                      environment the real compose.yaml gives the validator
#                                      (tests/images/validator-app/validator-app)
#   splice-dr-test/canton-participant:sim  `splice-sim participant`: the gRPC health service
#   splice-dr-test/web-ui:sim          an idle process for wallet-web-ui and ans-web-ui
#   splice-dr-test/nginx:sim           Debian bookworm minbase + nginx-light (mmdebstrap, imported),
#                                      nginx in the foreground (config mounted by the bundle)
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
# import_rootfs TAG NAME SHA MM_ARGS... -- SOURCES... -- IMPORT_CHANGES...: the mmdebstrap
# tarball NAME-<sha> (cached in $cache), imported as TAG labelled with the recipe's sha256,
# unless TAG already carries that label.
import_rootfs() {
    local tag="$1" name="$2" sha="$3"
    shift 3
    local mm=() srcs=() changes=()
    while [ "$1" != -- ]; do mm+=("$1"); shift; done
    shift
    while [ "$1" != -- ]; do srcs+=("$1"); shift; done
    shift
    for c in "$@"; do changes+=(--change "$c"); done
    local tarball="$cache/$name-${sha:0:16}.tar"
    [ "$(label_of "$tag" splice-dr.rootfs-sha256)" != "$sha" ] || return 0
    if [ ! -s "$tarball" ]; then
        if ! command -v mmdebstrap >/dev/null; then
            [ "$(id -u)" = 0 ] || die "mmdebstrap is missing and this is not root: apt-get install mmdebstrap"
            log "installing mmdebstrap (apt-get)"
            run_logged apt-get-update apt-get update -qq
            run_logged apt-get-install env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends mmdebstrap
        fi
        log "building the $name rootfs with mmdebstrap (about a minute)"
        local start=$SECONDS
        rm -f "$cache/$name"-*.tar "$cache/$name"-*.tar.tmp
        run_logged "mmdebstrap-$name" mmdebstrap "${mm[@]}" "$tarball.tmp.tar" "${srcs[@]}"
        mv "$tarball.tmp.tar" "$tarball"
        log "rootfs tarball $tarball ($(du -m "$tarball" | cut -f1) MiB) in $((SECONDS - start)) s"
    fi
    log "importing $tarball as $tag"
    local start=$SECONDS
    run_logged "docker-import-$name" docker import "${changes[@]}" \
        --change "LABEL splice-dr.rootfs-sha256=$sha" "$tarball" "$tag"
    log "imported $tag in $((SECONDS - start)) s"
}

rootfs_sha="$(printf '%s\n' v1 "${mm_args[@]}" "${sources[@]}" | sha256_of_stdin)"
import_rootfs "$ROOTFS_TAG" pg15-bookworm "$rootfs_sha" "${mm_args[@]}" -- "${sources[@]}" -- \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV LANG=C.UTF-8' \
    'CMD ["bash"]'

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

# ---- 4. stand-ins for the real bundle's images ------------------------------------------------
# commit_image TAG BASE RECIPE_SHA [SRC DEST_DIR OWNER]... -- CHANGE...: a container of BASE
# (never started), each SRC copied into DEST_DIR owned by OWNER (uid = gid; through a tar
# stream, which keeps the owner), committed with the Dockerfile-style CHANGEs and a label
# holding the recipe's sha256 and the base image id, so it is rebuilt only when one changed.
commit_image() {
    local tag="$1" base="$2" recipe="$3" base_id ctr
    shift 3
    local files=()
    while [ "$1" != -- ]; do
        files+=("$1" "$2" "$3")
        shift 3
    done
    shift
    base_id="$(docker image inspect --format '{{.Id}}' "$base")"
    if [ "$(label_of "$tag" splice-dr.recipe-sha256)" = "$recipe" ] &&
        [ "$(label_of "$tag" splice-dr.base-id)" = "$base_id" ]; then
        return 0
    fi
    log "building $tag"
    ctr="$(docker create "$base")"
    trap 'docker rm -f "$ctr" >/dev/null 2>&1 || true' EXIT
    local i name="${tag//[\/:]/-}"
    for ((i = 0; i < ${#files[@]}; i += 3)); do
        tar --owner="${files[i + 2]}" --group="${files[i + 2]}" --numeric-owner \
            -C "$(dirname "${files[i]}")" -cf - "$(basename "${files[i]}")" |
            run_logged "docker-cp-$name" docker cp - "$ctr:${files[i + 1]}"
    done
    local changes=()
    for c in "$@"; do changes+=(--change "$c"); done
    run_logged "docker-commit-$name" docker commit "${changes[@]}" \
        --change "LABEL splice-dr.recipe-sha256=$recipe splice-dr.base-id=$base_id" "$ctr" "$tag"
    docker rm -f "$ctr" >/dev/null
    trap - EXIT
}

VALIDATOR_TAG=splice-dr-test/validator-app:sim
PARTICIPANT_TAG=splice-dr-test/canton-participant:sim
WEBUI_TAG=splice-dr-test/web-ui:sim
NGINX_TAG=splice-dr-test/nginx:sim

# The validator app: its entrypoint reads the real compose.yaml's environment. The dump
# directory is owned by 1001 in the image, so a fresh domain-upgrade-dump volume is too (as
# newer Splice bundles chown it before the validator starts).
# NO_COLOR: plain log lines (the tests read them), as a container's log is not a terminal.
validator_changes=(
    'USER 1001:1001'
    'ENV NO_COLOR=1'
    'ENTRYPOINT ["validator-app"]'
    'CMD []'
)
recipe="$(cat <(printf '%s\n' v2 "${validator_changes[@]}") "$here/validator-app/validator-app" |
    sha256_of_stdin)"
dump_dir="$(mktemp -d)"
mkdir -m 0755 "$dump_dir/domain-upgrade-dump"
commit_image "$VALIDATOR_TAG" "$SIM_TAG" "$recipe" \
    "$here/validator-app/validator-app" /usr/local/bin 0 \
    "$dump_dir/domain-upgrade-dump" / 1001 -- "${validator_changes[@]}"
rm -rf "$dump_dir"

participant_changes=(
    'USER 1001:1001'
    'ENV NO_COLOR=1'
    'ENTRYPOINT ["splice-sim", "participant"]'
    'CMD []'
)
recipe="$(printf '%s\n' v1 "${participant_changes[@]}" | sha256_of_stdin)"
commit_image "$PARTICIPANT_TAG" "$SIM_TAG" "$recipe" -- "${participant_changes[@]}"

# The web UIs serve static pages the tests never load: an idle process that ends on SIGTERM.
webui_changes=(
    'USER 1001:1001'
    'ENTRYPOINT ["bash", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
    'CMD []'
)
recipe="$(printf '%s\n' v1 "${webui_changes[@]}" | sha256_of_stdin)"
commit_image "$WEBUI_TAG" "$PG_TAG" "$recipe" -- "${webui_changes[@]}"

# nginx as the official image runs it: in the foreground (`docker stop`'s SIGTERM is its fast
# shutdown; `docker commit` cannot set STOPSIGNAL), on
# its own minbase rootfs (the pg rootfs is also the daemon image's base: no nginx there).
NGINX_ROOTFS_TAG=splice-dr-test/nginx-rootfs:bookworm
nginx_mm_args=(
    --variant=minbase
    --include=nginx-light
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    bookworm
)
nginx_sha="$(printf '%s\n' v1 "${nginx_mm_args[@]}" "${sources[@]}" | sha256_of_stdin)"
import_rootfs "$NGINX_ROOTFS_TAG" nginx-bookworm "$nginx_sha" "${nginx_mm_args[@]}" -- \
    "${sources[@]}" -- 'ENV LANG=C.UTF-8' 'CMD ["bash"]'
nginx_changes=(
    'ENTRYPOINT []'
    'CMD ["nginx", "-g", "daemon off;"]'
    'EXPOSE 80'
)
recipe="$(printf '%s\n' v1 "${nginx_changes[@]}" | sha256_of_stdin)"
commit_image "$NGINX_TAG" "$NGINX_ROOTFS_TAG" "$recipe" -- "${nginx_changes[@]}"
docker image prune -f --filter "label=splice-dr.recipe-sha256" >/dev/null 2>&1 || true

printf '%s\n' "$PG_TAG" "$SIM_TAG" "$VALIDATOR_TAG" "$PARTICIPANT_TAG" "$WEBUI_TAG" "$NGINX_TAG"
