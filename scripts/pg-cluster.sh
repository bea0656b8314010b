#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for tests and the demo.
#   scripts/pg-cluster.sh start DIR PORT   initdb (if needed) and start
#   scripts/pg-cluster.sh stop DIR
# The server listens on 127.0.0.1 and a socket in DIR, trusts local
# connections, and preloads pg_cron.  PostgreSQL refuses to run as root, so
# as root the cluster belongs to the "postgres" system user.  Settings in
# $DEPT_PG_EXTRA_CONF are appended to postgresql.conf at initdb.
set -euo pipefail
cmd=$1
dir=$2
port=${3:-5499}
bindir=$(pg_config --bindir)

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

case "$cmd" in
start)
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
			--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
		cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
fsync = off
${DEPT_PG_EXTRA_CONF:-}
CONF
	fi
	as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	;;
stop)
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	;;
*)
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
	;;
esac
