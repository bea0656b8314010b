#!/usr/bin/env bash
# Install what building and testing dept needs, from Debian's packages
# (bookworm): PostgreSQL 15 server + headers, pgTAP, pg_cron, OpenBLAS,
# utf8proc, cJSON, clang with libFuzzer, node/npm (to fetch the model).  Idempotent; as root or
# through sudo.
set -euo pipefail
packages=(
	build-essential pkg-config ca-certificates
	postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap postgresql-15-cron
	libtap-parser-sourcehandler-pgtap-perl
	libopenblas-dev libutf8proc-dev libcjson-dev
	clang libclang-rt-14-dev
	nodejs npm
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian (e.g. preinstalled).
if command -v node >/dev/null && command -v npm >/dev/null; then
	filtered=()
	for p in "${missing[@]}"; do
		case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
	done
	missing=("${filtered[@]+"${filtered[@]}"}")
fi
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
