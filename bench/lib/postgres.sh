# A throwaway PostgreSQL for a benchmark, and a free loopback port: sourced
# by the bench scripts. `pg_start DIR [SETTING…]` runs initdb into DIR/pg
# (as the `postgres` user when run as root) and starts it on a free port
# with the `-c` settings given, setting `pg_port` and `pg_url` (database
# `medseal`, user `medseal`, trust on loopback); `pg_stop DIR` stops it.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_start() {
  local dir=$1 opts="" s
  shift
  for s in "$@"; do opts+=" -c $s"; done
  pg_port=$(free_port)
  chmod 755 "$dir"
  mkdir -p "$dir/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir/pg"
  as_pg "$pgbin/initdb" -D "$dir/pg" -U medseal --auth=trust >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -o "-p $pg_port -k /tmp -c listen_addresses=127.0.0.1$opts" -l "$dir/pg/log" start >/dev/null
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U medseal medseal
  pg_url="postgres://medseal@127.0.0.1:$pg_port/medseal"
}
pg_stop() { as_pg "$pgbin/pg_ctl" -D "$1/pg" -m immediate stop >/dev/null 2>&1 || true; }
