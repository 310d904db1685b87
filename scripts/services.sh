#!/usr/bin/env bash
# Start throwaway PostgreSQL, Redis, Prometheus and Alertmanager on free 127.0.0.1 ports for the
# tests, export their URLs, and stop them again. Sourced by scripts/with-services.sh.
#
#   services_up     install what is missing (root: apt-get), start, export EMPIRE_TEST_* variables
#   services_down   stop everything and remove the temporary directory (safe to call twice)
#
# Exported: EMPIRE_TEST_POSTGRES_URL, EMPIRE_TEST_REDIS_URL, EMPIRE_TEST_PROMETHEUS_URL,
# EMPIRE_TEST_ALERTMANAGER_URL, EMPIRE_TEST_EXPORTER_PORT (Prometheus scrapes 127.0.0.1:<port>
# every second; a test serves metrics there), EMPIRE_TEST_CHROMIUM (the Debian chromium binary). A service that cannot be installed (not root, no
# package) is skipped with a warning, and the tests that need it are skipped, not failed, unless
# EMPIRE_TEST_REQUIRE_SERVICES=1 (.ci/run sets it): then they fail (tests/conftest.py).
# Set EMPIRE_SERVICES=none to start nothing.

_svc_log() { printf 'services: %s\n' "$*" >&2; }
_svc_freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
_svc_waitfor() { local i; for i in $(seq 150); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  _svc_log "timeout waiting for: $1"; return 1; }
_svc_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

_svc_install() {
  local need=()
  [ -n "$(_svc_pgbin)" ] || need+=(postgresql)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v prometheus >/dev/null || need+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
  command -v curl >/dev/null || need+=(curl)
  # the status page's browser test (tests/integration/test_status_page_browser.py): headless
  # Chromium driven over the DevTools protocol; Debian's chromium-driver comes along for selenium users
  command -v chromium >/dev/null || need+=(chromium chromium-driver fonts-dejavu-core)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    _svc_log "missing ${need[*]} and not root: those services are skipped (sudo apt-get install ${need[*]})"
    return 0
  fi
  _svc_log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || _svc_log "apt-get install failed: some services are skipped"
  # Debian starts packaged daemons on install; the tests use their own instances.
  for s in postgresql redis-server prometheus prometheus-alertmanager; do
    (service "$s" stop || systemctl stop "$s") >/dev/null 2>&1 || true
  done
}

_svc_as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

_svc_postgres() {
  local bin; bin=$(_svc_pgbin); [ -n "$bin" ] || { _svc_log "PostgreSQL not available: skipped"; return 0; }
  local port; port=$(_svc_freeport); SVC_PGDATA=$SVC_DIR/pg
  if [ "$(id -u)" -eq 0 ]; then install -d -o postgres -g postgres -m 700 "$SVC_PGDATA"; else mkdir -m 700 "$SVC_PGDATA"; fi
  ( cd /tmp && _svc_as_pg "$bin/initdb" -D "$SVC_PGDATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null \
    && _svc_as_pg "$bin/pg_ctl" -D "$SVC_PGDATA" -l "$SVC_PGDATA/log" -w -o "-p $port -k $SVC_PGDATA \
      -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
      -c max_connections=200" start >/dev/null \
    && _svc_as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qc \
      "CREATE USER empire PASSWORD 'empire' CREATEDB" -c "CREATE DATABASE empire OWNER empire" \
      -c "GRANT pg_signal_backend TO empire" ) \
    || { _svc_log "PostgreSQL failed to start: skipped"; return 0; }
  SVC_PGBIN=$bin
  export EMPIRE_TEST_POSTGRES_URL="postgresql://empire:empire@127.0.0.1:$port/empire"
}

_svc_redis() {
  command -v redis-server >/dev/null || { _svc_log "Redis not available: skipped"; return 0; }
  local port; port=$(_svc_freeport)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$SVC_DIR" --pidfile "$SVC_DIR/redis.pid" --logfile "$SVC_DIR/redis.log" >/dev/null
  _svc_waitfor "redis-cli -p $port ping | grep -q PONG" || return 0
  export EMPIRE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
}

_svc_alertmanager() {
  command -v prometheus-alertmanager >/dev/null || { _svc_log "Alertmanager not available: skipped"; return 0; }
  local port; port=$(_svc_freeport)
  printf "route: {receiver: 'null', group_wait: 0s}\nreceivers: [{name: 'null'}]\n" >"$SVC_DIR/am.yml"
  prometheus-alertmanager --config.file="$SVC_DIR/am.yml" --storage.path="$SVC_DIR/am" \
    --cluster.listen-address= --web.listen-address="127.0.0.1:$port" --log.level=warn \
    >"$SVC_DIR/am.log" 2>&1 &
  SVC_PIDS+=($!)
  _svc_waitfor "curl -sf http://127.0.0.1:$port/-/ready" || return 0
  export EMPIRE_TEST_ALERTMANAGER_URL="http://127.0.0.1:$port"
}

_svc_prometheus() {
  command -v prometheus >/dev/null || { _svc_log "Prometheus not available: skipped"; return 0; }
  local port; port=$(_svc_freeport)
  export EMPIRE_TEST_EXPORTER_PORT=${EMPIRE_TEST_EXPORTER_PORT:-$(_svc_freeport)}
  cat >"$SVC_DIR/prom.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs: [{job_name: empire-test, static_configs: [{targets: ['127.0.0.1:$EMPIRE_TEST_EXPORTER_PORT']}]}]
YAML
  prometheus --config.file="$SVC_DIR/prom.yml" --storage.tsdb.path="$SVC_DIR/prom" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$SVC_DIR/prom.log" 2>&1 &
  SVC_PIDS+=($!)
  _svc_waitfor "curl -sf http://127.0.0.1:$port/-/ready" || return 0
  export EMPIRE_TEST_PROMETHEUS_URL="http://127.0.0.1:$port"
}

services_up() {
  SVC_PIDS=()
  if [ "${EMPIRE_SERVICES:-all}" = none ]; then _svc_log "EMPIRE_SERVICES=none: starting nothing"; return 0; fi
  _svc_install
  SVC_DIR=$(mktemp -d /tmp/empire-svc.XXXXXX); chmod 755 "$SVC_DIR"
  _svc_postgres; _svc_redis; _svc_alertmanager; _svc_prometheus
  if command -v chromium >/dev/null; then export EMPIRE_TEST_CHROMIUM; EMPIRE_TEST_CHROMIUM=$(command -v chromium); fi
  _svc_log "up: postgres=${EMPIRE_TEST_POSTGRES_URL:-none} redis=${EMPIRE_TEST_REDIS_URL:-none}" \
    "prometheus=${EMPIRE_TEST_PROMETHEUS_URL:-none} alertmanager=${EMPIRE_TEST_ALERTMANAGER_URL:-none}" \
    "chromium=${EMPIRE_TEST_CHROMIUM:-none}"
  case "${EMPIRE_TEST_REQUIRE_SERVICES:-}" in 1|true|yes)
    [ -n "${EMPIRE_TEST_POSTGRES_URL:-}" ] && [ -n "${EMPIRE_TEST_REDIS_URL:-}" ] \
      && [ -n "${EMPIRE_TEST_PROMETHEUS_URL:-}" ] && [ -n "${EMPIRE_TEST_ALERTMANAGER_URL:-}" ] \
      && [ -n "${EMPIRE_TEST_CHROMIUM:-}" ] \
      || _svc_log "EMPIRE_TEST_REQUIRE_SERVICES=1: the tests needing a service that is 'none' above will FAIL" ;;
  esac
}

services_down() {
  [ -n "${SVC_DIR:-}" ] && [ -d "$SVC_DIR" ] || return 0
  if [ -n "${SVC_PGBIN:-}" ]; then _svc_as_pg "$SVC_PGBIN/pg_ctl" -D "$SVC_PGDATA" -m immediate stop >/dev/null 2>&1 || true; fi
  [ -f "$SVC_DIR/redis.pid" ] && kill "$(cat "$SVC_DIR/redis.pid")" 2>/dev/null || true
  local p; for p in "${SVC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SVC_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$SVC_DIR"; SVC_DIR=
}
