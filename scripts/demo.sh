#!/usr/bin/env bash
# The demo: install dependencies, build and install dept (fetching the
# default model with npm), start a local PostgreSQL server in
# /tmp/dept-demo-5498 on port 5498, and run demo/embed.sql (embeddings and
# nearest neighbours) and demo/train.sql (train a sentiment classifier with the default method, auto
# on 600 reviews, predict, evaluate) against it.  The server keeps running so
# you can connect afterwards:  psql -h 127.0.0.1 -p 5498 -U postgres
# Stop it with:  scripts/pg-cluster.sh stop /tmp/dept-demo-5498
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make -s -j"$(nproc)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo make -s install >/dev/null
port=${DEPT_DEMO_PORT:-5498}
pgdir=${TMPDIR:-/tmp}/dept-demo-$port
scripts/pg-cluster.sh start "$pgdir" "$port"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
for f in demo/embed.sql demo/train.sql; do
	echo "== $f"
	psql -X -q -f "$f"
done
echo "server still running on port $port (stop: scripts/pg-cluster.sh stop $pgdir)"
