#!/usr/bin/env bash
# Installs and starts what the tests need on a fresh Debian 12 with Rust and Docker, as
# root; idempotent and quick when everything is there. Called by tests/run.sh (the README's
# test command) and .ci/run, so the list lives here only:
#
#   Debian packages  postgresql-15 + client (the Postgres-backed tests), util-linux
#                    (runuser, flock), python3-venv (moto's venv),
#                    systemd (systemd-analyze checks the packaged unit), prometheus
#                    (promtool checks the alert rules and the dashboard's queries),
#                    chromium (renders the incident report page headless)
#   Compose v2       the `docker compose` plugin, from Debian trixie's signed archive
#                    (tests/install-compose-v2.sh): the compose tests run the real Splice
#                    compose.yaml, which bookworm's docker-compose v1 refuses; needs curl,
#                    gpgv, xz-utils and debian-archive-keyring (installed when missing)
#   moto             moto[server] (an S3 server, from PyPI) in a virtual environment,
#                    SPLICE_DR_VENV or /var/tmp/splice-dr-venv: Debian's Python refuses
#                    `pip install` outside one (PEP 668). The tests run its python.
#   Postgres         the 15/main cluster started and the test role (tests/pg-setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pg_ctlcluster >/dev/null || need+=(postgresql-15 postgresql-client-15)
command -v runuser >/dev/null || need+=(util-linux)
command -v flock >/dev/null || need+=(util-linux)
# test CAs (plugins/postgres tls, offsite_e2e: moto's STS over HTTPS).
command -v openssl >/dev/null || need+=(openssl)
# install-compose-v2.sh fetches and verifies Debian's package with these.
command -v curl >/dev/null || need+=(curl)
command -v gpgv >/dev/null || need+=(gpgv)
command -v xz >/dev/null || need+=(xz-utils)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v systemd-analyze >/dev/null || need+=(systemd)
# promtool checks the shipped alert rules and dashboard queries (tests/monitoring_e2e.rs).
command -v promtool >/dev/null || need+=(prometheus)
# report_e2e renders the incident report's HTML page in a real headless browser.
command -v chromium >/dev/null || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

bash tests/install-compose-v2.sh

venv="${SPLICE_DR_VENV:-/var/tmp/splice-dr-venv}"
if ! "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
    echo "setup: moto[server] into the virtual environment $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]==5.2.1'
fi
"$venv/bin/python" -c 'import moto; print("setup: moto", moto.__version__, "in", __import__("sys").prefix)'

sh tests/pg-setup.sh
