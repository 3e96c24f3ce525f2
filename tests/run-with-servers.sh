#!/usr/bin/env bash
# Starts the real time-series servers the integration tests talk to, runs `cargo test` with
# their URLs in the environment, and always stops them again.
#   - VictoriaMetrics (the InfluxDB v2 write API path)   -> CH_TEST_VM_URL
#   - InfluxDB 1.6 (v1 API, strict parser, InfluxQL)      -> CH_TEST_INFLUXDB1_URL
#   - NTLM/Negotiate acceptor (pyspnego) and an MIT krb5 KDC -> CH_TEST_WINAUTH_*, CH_TEST_KDC_URL
#     (tests/winauth/setup.sh; each test starts its own acceptor in front of its simulator)
# Installs both from Debian's packages when the binaries are missing (CI runs on a fresh
# machine). Extra arguments go to `cargo test`. Exits with cargo's exit status.
set -euo pipefail

log() { printf 'run-with-servers: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing from Debian's packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q </dev/null
  # The packages try to start their own services; in a container that is refused, harmlessly,
  # but it can make apt-get report a failure, so check for the binaries instead.
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null || true
  for bin in victoria-metrics influxd curl; do
    command -v "$bin" >/dev/null 2>&1 || { log "could not install $bin"; exit 1; }
  done
fi

# A free TCP port on 127.0.0.1 (bind to port 0, read what the kernel chose). A tiny race with
# other processes remains; readiness checks below catch it.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
  # No python: pick a random high port that nothing listens on.
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/ch-servers.XXXXXX")
vm_pid=""
influx_pid=""
kdc_pid=""

# shellcheck disable=SC2317 # called from the EXIT trap
stop_servers() {
  local pid
  [ -f "$work/krb5kdc.pid" ] && kdc_pid=$(cat "$work/krb5kdc.pid")
  for pid in "$vm_pid" "$influx_pid" "$kdc_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$vm_pid" "$influx_pid" "$kdc_pid"; do
    if [ -n "$pid" ]; then
      # Give each up to 10 s to shut down cleanly, then insist.
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

dump_logs() {
  local f
  for f in "$work"/*.log; do
    [ -f "$f" ] || continue
    log "---- $f ----"
    tail -n 100 "$f" >&2 || true
  done
}

# wait_http NAME URL EXPECTED_STATUS PID
wait_http() {
  local name=$1 url=$2 want=$3 pid=$4 code
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during start-up"
      dump_logs
      return 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    if [ "$code" = "$want" ]; then
      log "$name ready at $url"
      return 0
    fi
    sleep 0.1
  done
  log "$name did not answer $want on $url within 30 s"
  dump_logs
  return 1
}

# VictoriaMetrics: 100y retention so old test timestamps are kept; no latency offset so fresh
# points are visible to queries at once.
vm_port=$(free_port)
mkdir -p "$work/vm"
victoria-metrics -httpListenAddr="127.0.0.1:$vm_port" -storageDataPath="$work/vm" \
  -retentionPeriod=100y -search.latencyOffset=0s >"$work/victoria-metrics.log" 2>&1 &
vm_pid=$!

# InfluxDB 1.6: everything under the temp dir, only on 127.0.0.1, no phoning home.
influx_port=$(free_port)
influx_rpc_port=$(free_port)
while [ "$influx_rpc_port" = "$influx_port" ] || [ "$influx_rpc_port" = "$vm_port" ]; do
  influx_rpc_port=$(free_port)
done
mkdir -p "$work/influxdb/meta" "$work/influxdb/data" "$work/influxdb/wal"
cat >"$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_rpc_port"

[meta]
  dir = "$work/influxdb/meta"

[data]
  dir = "$work/influxdb/data"
  wal-dir = "$work/influxdb/wal"
  query-log-enabled = false

[http]
  bind-address = "127.0.0.1:$influx_port"
  log-enabled = false

[monitor]
  store-enabled = false
CONF
influxd -config "$work/influxdb.conf" >"$work/influxdb.log" 2>&1 &
influx_pid=$!

wait_http victoria-metrics "http://127.0.0.1:$vm_port/health" 200 "$vm_pid"
wait_http influxdb "http://127.0.0.1:$influx_port/ping" 204 "$influx_pid"

export CH_TEST_VM_URL="http://127.0.0.1:$vm_port"
export CH_TEST_INFLUXDB1_URL="http://127.0.0.1:$influx_port"
log "CH_TEST_VM_URL=$CH_TEST_VM_URL CH_TEST_INFLUXDB1_URL=$CH_TEST_INFLUXDB1_URL"

# Windows authentication for the on-premises tests: venv + pyspnego, NTLM users, MIT KDC.
winauth_start=$SECONDS
if bash "$(dirname "$0")/winauth/setup.sh" "$work" "$(free_port)"; then
  # shellcheck disable=SC1091 # written by setup.sh
  . "$work/winauth.env"
  log "winauth ready in $((SECONDS - winauth_start)) s (KDC $CH_TEST_KDC_URL)"
else
  log "winauth setup failed; the on-premises tests will fail in CI"
fi

status=0
cargo test "$@" 2>&1 | tee "$work/cargo-test.out" || status=$?
# One closing line over all test binaries (cargo's last line is the doc-tests' own count).
read -r passed failed < <(awk '/^test result:/ {
  for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) }
} END { print p + 0, f + 0 }' "$work/cargo-test.out")
echo "tests: $passed passed, $failed failed"
exit "$status"
