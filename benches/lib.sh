# shellcheck shell=bash
# What the benchmark scripts (e2e.sh, scale.sh) share: stopping every process they started on
# exit, free loopback ports, waiting for a server to answer, stopping one process, and starting
# VictoriaMetrics. Sourced, never run. The script sourcing it defines `log` first, and fills
# `pids` (processes it started) and `scratch` (paths to remove on exit); it sets its own traps:
#   trap bench_cleanup EXIT; trap 'exit 130' INT TERM

pids=()
scratch=()

# Stops the processes of `pids` that are still this script's children, then removes `scratch`.
# shellcheck disable=SC2317 # called from the EXIT trap
bench_cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    # Only a process that is still this script's child (a PID may have been reused).
    if [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = "$$" ]; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${#scratch[@]}" -gt 0 ]; then rm -rf "${scratch[@]}"; fi
}

# A free TCP port on 127.0.0.1 (bound to port 0, released; readiness checks catch a race).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # URL PID [STATUS]: until URL answers STATUS (200), for up to a minute
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || { log "process $2 exited while starting"; return 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = "${3:-200}" ] && return 0
    sleep 0.1
  done
  log "$1 did not answer"; return 1
}

stop() { # PID: stop one process this script started, gracefully (SIGTERM), and wait for it
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# VictoriaMetrics on 127.0.0.1:PORT with fresh storage in DATA (removed first, so that a count
# is of this run's points only), logging to LOG, with ARGS added; sets `vm_pid` (added to
# `pids`) and returns once /health answers.
vm_pid=""
start_victoria_metrics() { # PORT DATA LOG [ARGS...]
  local port=$1 data=$2 out=$3
  shift 3
  rm -rf "$data"
  victoria-metrics -httpListenAddr="127.0.0.1:$port" -storageDataPath="$data" \
    -retentionPeriod=100y -search.latencyOffset=0s -loggerLevel=ERROR "$@" >>"$out" 2>&1 &
  vm_pid=$!
  pids+=("$vm_pid")
  wait_http "http://127.0.0.1:$port/health" "$vm_pid"
}
