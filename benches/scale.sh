#!/usr/bin/env bash
# Scale benchmark: the simulator with Citrix-like latency and a real clock, N medium tenants
# (500 machines, 5,000 sessions a day each, all the same size), every entity kind on the
# default schedule, the release harvester as a daemon into an output server. After a warm-up
# (every tenant finished its first cycle, which reads the short history), it measures a steady
# state window (default: three of the longest default interval, summaries_daily's hour), then
# stops the daemon gracefully so that everything is acknowledged, and compares what was
# served, counted, written and stored. For each N it reports:
#   - each tenant's busy time over its ideal (p50, p99, max over tenants): busy = the growth of
#     citrix_harvester_cycle_seconds_total over the window, ideal = the growth of the latency
#     the simulator imposed on that tenant (/_sim/stats latency_ms; one request at a time makes
#     nothing faster possible). A window approximation: a cycle running across either edge of
#     the window counts on one side only, so short windows give noisy ratios;
#   - runs skipped because a cycle overran (citrix_harvester_skipped_runs_total, window);
#   - requests in flight: the most the simulator saw at once across all tenants, and the
#     harvester's own peak (citrix_harvester_requests_in_flight_peak, where it exists);
#   - peak RSS (sampled from /proc every second, whole run) and idle RSS (after the window,
#     once the simulator has seen no request for 12 s; "n/a" if that never happened);
#   - the harvester's CPU seconds per simulated second, over the window, and its CPU
#     microseconds per row the simulator served within the window (us_per_row);
#   - write requests and write timeouts (the harvester's /metrics at the end of the window
#     where it exports them; else the output server's own count of write requests and the
#     timed-out write attempts in the harvester's log, whole run);
#   - rows the simulator served against records the harvester counted (its log of finished
#     cycles, whole run), points it wrote against points the output stored.
#
#   bash benches/scale.sh [N...]        (default: 1000 5000 10000)
# Environment: TIME_SCALE (1: simulated seconds per wall second; below 1 the simulated clock
# and its latency run slower than real time, and the harvester's interval, schedule and
# jitter are written into its config divided by the same factor, so that its schedule keeps
# step with the simulated clock; use it when the machine saturates, and say so),
# LATENCY_P50 / LATENCY_P99 (1s / 5s, simulated), PAGE_SIZE (1000, as in Citrix Cloud),
# MACHINES (500), SESSIONS_PER_DAY (5000), HISTORY_DAYS (0.02, about 29 minutes: the first
# cycle stays small), OUTPUT (vm: VictoriaMetrics; influxdb1: InfluxDB 1.6; count: a cheap
# line counter in scale_helper.py that answers /api/v2/write with 204, so that the output
# server does not eat the harvester's CPU), WINDOW (simulated seconds; default 10800),
# KINDS (restricts the entities, e.g. KINDS="machines connections", for quick runs only),
# DATA_SETS (the simulator generates this many data sets and tenant i serves set i mod
# DATA_SETS under its own identity and latency; default: N up to 200 tenants, else 20 — a
# medium tenant's own rows cost the simulator 7-14 MB, so 1,000 tenants with their own
# data fill this machine's memory), RETAIN (the simulator drops raw samples and summary rows
# older than this; default 2h, which keeps a long run the same size), BODY_BUDGET (the
# harvester's harvester.body_budget, e.g. 32MiB; default: the harvester's default), HARVESTER
# (a binary to run instead of building this checkout's release binary: to compare two builds
# back to back).
# Not a test: nothing here runs in CI. Results: a table on stdout and results.tsv in the
# work directory it names (kept; remove it when done).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
time_scale=${TIME_SCALE:-1}
p50=${LATENCY_P50:-1s}
p99=${LATENCY_P99:-5s}
page_size=${PAGE_SIZE:-1000}
machines=${MACHINES:-500}
sessions_per_day=${SESSIONS_PER_DAY:-5000}
history_days=${HISTORY_DAYS:-0.02}
output=${OUTPUT:-vm}
kinds=${KINDS:-}
data_sets=${DATA_SETS:-}
retain=${RETAIN:-2h}
helper="python3 $root/benches/scale_helper.py"
window=${WINDOW:-$($helper window)}
if [ "$#" -eq 0 ]; then set -- 1000 5000 10000; fi

log() { printf 'scale: %s\n' "$*" >&2; }

case "$output" in
  vm) need=victoria-metrics ;;
  influxdb1) need=influxd ;;
  count) need=python3 ;;
  *) log "OUTPUT must be vm, influxdb1 or count"; exit 2 ;;
esac
for bin in "$need" curl python3; do
  command -v "$bin" >/dev/null 2>&1 || { log "$bin is missing (apt-get install victoria-metrics influxdb curl python3)"; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d "${TMPDIR:-/tmp}/ch-scale.XXXXXX")
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$root/benches/lib.sh"
scratch=("$work/out-data" "$work/state")
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

out_url=""
out_pid=""
start_output() { # fresh storage each N, so the count is of this run's points only
  rm -rf "$work/out-data"
  mkdir -p "$work/out-data"
  local port rpc
  port=$(free_port)
  out_url="http://127.0.0.1:$port"
  case "$output" in
    vm)
      # '.' between measurement and field: the counter splits metric names without guessing.
      start_victoria_metrics "$port" "$work/out-data" "$work/output.log" \
        -influxMeasurementFieldSeparator=.
      out_pid=$vm_pid ;;
    influxdb1)
      rpc=$(free_port)
      cat >"$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$work/out-data/meta"
[data]
  dir = "$work/out-data/data"
  wal-dir = "$work/out-data/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
      influxd -config "$work/influxdb.conf" >>"$work/output.log" 2>&1 &
      out_pid=$!; pids+=("$out_pid")
      wait_http "$out_url/ping" "$out_pid" 204
      curl -s -o /dev/null -XPOST "$out_url/query" --data-urlencode 'q=CREATE DATABASE citrix' ;;
    count)
      $helper count-server "$port" >>"$work/output.log" 2>&1 &
      out_pid=$!; pids+=("$out_pid")
      wait_http "$out_url/health" "$out_pid" ;;
  esac
}

if [ -n "${HARVESTER:-}" ]; then
  harvester=$HARVESTER
  log "using $harvester"
else
  log "building the release binary"
  (cd "$root" && cargo build --release --quiet)
  harvester="$root/target/release/citrix-harvester"
fi

results="$work/results.tsv"
$helper row-header >"$results"
wall_of() { python3 -c "print(max(1, round($1 / $time_scale)))"; }

for n in "$@"; do
  d="$work/n$n"
  mkdir -p "$d"
  start_output
  log "N=$n: starting the simulator (latency p50 $p50, p99 $p99, time scale $time_scale)"
  sim_port=$(free_port)
  fb_port=$(free_port)
  sets=${data_sets:-$(( n <= 200 ? n : 20 ))}
  log "N=$n: $sets data sets, rows older than $retain dropped"
  "$harvester" simulate --listen "127.0.0.1:$sim_port" --fallback-listen "127.0.0.1:$fb_port" \
    --tenants "$n" --page-size "$page_size" --sessions-per-day "$sessions_per_day" \
    --history-days "$history_days" --machines-per-tenant "$machines" --equal-tenants \
    --latency-p50 "$p50" --latency-p99 "$p99" --clock real --time-scale "$time_scale" \
    --data-sets "$sets" --retain "$retain" \
    >"$d/sim.out" 2>"$d/sim.err" &
  sim_pid=$!
  pids+=("$sim_pid")
  sim_url="http://127.0.0.1:$sim_port"
  wait_http "$sim_url/_sim/now" "$sim_pid"
  for _ in $(seq 1 6000); do
    [ "$(grep -c 'customer_id=' "$d/sim.out" || true)" -ge "$n" ] && break
    sleep 0.1
  done
  listen_port=$(free_port)
  metrics_url="http://127.0.0.1:$listen_port/metrics"
  rm -rf "$work/state"
  mkdir -p "$work/state"
  $helper config "$d/sim.out" "$sim_url" "http://127.0.0.1:$fb_port" "$output" "$out_url" \
    "$work/state" "127.0.0.1:$listen_port" "$d" "$time_scale" "$kinds" >/dev/null
  $helper snapshot "$sim_url" "$metrics_url" "$d/sim-start.json"

  log "N=$n: harvester daemon; warm-up until every tenant finished a cycle"
  "$harvester" --log-format json --config "$d/harvester.toml" >"$d/harvester.log" 2>&1 &
  h_pid=$!
  pids+=("$h_pid")
  $helper sample "$h_pid" "$d/samples.txt" &
  pids+=("$!")
  warm0=$SECONDS
  until [ "$($helper tenants-done "$metrics_url")" -ge "$n" ]; do
    kill -0 "$h_pid" 2>/dev/null || { log "the harvester exited; see $d/harvester.log"; exit 1; }
    sleep 2
  done
  log "N=$n: warm-up took $((SECONDS - warm0)) s; measuring $window simulated s ($(wall_of "$window") s wall)"
  $helper snapshot "$sim_url" "$metrics_url" "$d/snap0.json"
  sleep "$(wall_of "$window")"
  $helper snapshot "$sim_url" "$metrics_url" "$d/snap1.json"

  # Idle RSS: a quiet moment between cycles (no request in flight for 12 s, within two of the
  # shortest interval), long enough for the daemon to return what its cycles freed.
  idle_kb=n/a
  if $helper quiet "$sim_url" 12 "$(wall_of 120)"; then
    idle_kb=$(awk '/VmRSS/ {print $2}' "/proc/$h_pid/status")
  else
    log "N=$n: never quiet for 12 s: no idle RSS"
  fi

  log "N=$n: stopping the harvester gracefully"
  stop "$h_pid"
  $helper snapshot "$sim_url" "$metrics_url" "$d/sim-final.json"
  stop "$sim_pid"
  log "N=$n: counting what $output stored"
  $helper stored "$output" "$out_url" "$d/stored.json"
  read -r records points timeouts < <($helper logged "$d/harvester.log")
  $helper row "$n" "$d/sim.out" "$d/snap0.json" "$d/snap1.json" "$d/sim-final.json" \
    "$d/stored.json" "$d/samples.txt" "$time_scale" "$idle_kb" "$records" "$points" "$timeouts" \
    >>"$results"
  stop "$out_pid"
done

line=$(tail -n +2 "$results" | awk -F'\t' '{printf "N=%s ratio_p99=%s ratio_max=%s skipped=%s in_flight=%s peak_rss_mb=%s cpu_per_sim_s=%s us_per_row=%s timeouts=%s served=%s records=%s written=%s stored=%s extra_copies=%s; ", $1, $3, $4, $6, $7, $10, $12, $20, $14, $15, $16, $17, $18, $19}')
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average at start: $load_before, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data: $machines machines and $sessions_per_day sessions a day per tenant (equal tenants, ${data_sets:-N up to 200, else 20} data sets, retain $retain), history_days=$history_days, page_size=$page_size, latency p50=$p50 p99=$p99, time_scale=$time_scale (simulated s per wall s), window=$window simulated s, output=$output, kinds=${kinds:-all on the default schedule}"
echo "# rows_served: the simulator's top-level rows without the lookup table ConnectionFailureCategories (read for category names, not records); records: the harvester's finished cycles (log), whole run; points_stored: distinct (series, timestamp) per measurement, extra_copies: further copies of a stored point (VictoriaMetrics keeps a point written twice, e.g. a re-read row; InfluxDB overwrites it)"
echo "# ratio = a tenant's busy time (growth of cycle_seconds_total) over its ideal (growth of the latency the simulator imposed), over the window: an approximation, cycles crossing the window's edges count on one side only"
echo "# result: $line"
column -t -s $'\t' "$results"
log "work directory (logs, configs, snapshots, results.tsv): $work"
