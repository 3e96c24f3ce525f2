#!/usr/bin/env bash
# End-to-end benchmark: the simulator with N tenants, the release harvester `--once` into a
# real VictoriaMetrics (InfluxDB v2 write API), then the Python baseline of the seed
# (benches/baseline) against the same simulator and a fresh VictoriaMetrics: same records,
# side by side. Entities: connections + machines. For each N it reports wall time, CPU seconds
# (user+sys of the harvester process alone, from /usr/bin/time), peak RSS, records per second
# and per CPU-second, and checks that the points that arrived in VictoriaMetrics equal the
# records the simulator served. Then the idle cost: the daemon's RSS after a cycle that found
# nothing new, per tenant (difference between the largest and the smallest N).
#
#   bash benches/e2e.sh [N...]          (default: 10 100 1000)
# Environment: SESSIONS_PER_DAY (640) and HISTORY_DAYS (1) set the data volume (about 1000
# connections per tenant on average: tenants are 0.35-1.2x tenant 0), PAGE_SIZE (1000, as in
# Citrix Cloud), BASELINE=0 skips the Python baseline, IDLE=0 skips the idle measurement,
# MAX_REQUESTS_IN_FLIGHT and BODY_BUDGET set the harvester's harvester.max_requests_in_flight
# and harvester.body_budget (defaults 4096 and "64MiB"; BODY_BUDGET=32MiB with
# citrix.max_page_bytes at its default holds one page at a time), WRAP is a command
# put before each harvester, ours and the baseline (a profiler: WRAP="heaptrack -o /tmp/h";
# the figures then include the profiler's own cost), OUTPUT_CONCURRENCY sets output.concurrency
# ("adaptive" by default, or a fixed number of write requests in flight), GZIP=0 turns off the harvester's gzip of write requests (on by
# default; the Python baseline, like the seed, sends plain text).
# Not a test: nothing here runs in CI. Results: a table on stdout and results.tsv in the
# work directory it names (kept; remove it when done).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sessions_per_day=${SESSIONS_PER_DAY:-640}
history_days=${HISTORY_DAYS:-1}
page_size=${PAGE_SIZE:-1000}
baseline=${BASELINE:-1}
idle=${IDLE:-1}
in_flight=${MAX_REQUESTS_IN_FLIGHT:-}
body_budget=${BODY_BUDGET:-}
wrap=${WRAP:-}
gzip=${GZIP:-}
output_concurrency=${OUTPUT_CONCURRENCY:-}
if [ "$#" -eq 0 ]; then set -- 10 100 1000; fi

log() { printf 'e2e: %s\n' "$*" >&2; }

for bin in victoria-metrics curl python3; do
  command -v "$bin" >/dev/null 2>&1 || { log "$bin is missing (apt-get install victoria-metrics curl python3)"; exit 1; }
done
[ -x /usr/bin/time ] || { log "/usr/bin/time is missing (apt-get install time)"; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d "${TMPDIR:-/tmp}/ch-e2e.XXXXXX")
helper="python3 $root/benches/e2e_helper.py"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$root/benches/lib.sh"
scratch=("$work/vm" "$work/state" "$work/venv")
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

vm_url=""
start_vm() { # fresh storage each run, so the count is of this run's points only
  local port
  port=$(free_port)
  vm_url="http://127.0.0.1:$port"
  start_victoria_metrics "$port" "$work/vm" "$work/vm.log"
}

# /usr/bin/time -v output -> "wall_s cpu_s rss_mb"
time_figures() {
  awk -F': ' '
    /User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2}
    /Elapsed \(wall clock\)/ {n=split($2, p, ":"); w=0; for (i=1;i<=n;i++) w=w*60+p[i]}
    END {printf "%.2f %.2f %.1f\n", w, u+s, r/1024}' "$1"
}

proc_cpu() { # PID -> user+sys seconds so far
  awk '{printf "%.2f\n", ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo 0
}

log "building the release binary"
(cd "$root" && cargo build --release --quiet)
harvester="$root/target/release/citrix-harvester"

if [ "$baseline" = 1 ]; then
  log "installing the Python baseline into a venv"
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet -r "$root/benches/baseline/requirements.txt"
fi

results="$work/results.tsv"
printf 'impl\ttenants\trecords\tpoints_in_vm\twall_s\tcpu_s\trss_mb\trecords_per_s\trecords_per_cpu_s\tsim_cpu_s\n' >"$results"
declare -A idle_kb

for n in "$@"; do
  log "N=$n: generating the simulator's data"
  sim_port=$(free_port)
  fb_port=$(free_port)
  "$harvester" simulate --listen "127.0.0.1:$sim_port" --fallback-listen "127.0.0.1:$fb_port" \
    --tenants "$n" --page-size "$page_size" --sessions-per-day "$sessions_per_day" \
    --history-days "$history_days" >"$work/sim-$n.out" 2>"$work/sim-$n.err" &
  sim_pid=$!
  pids+=("$sim_pid")
  sim_url="http://127.0.0.1:$sim_port"
  wait_http "$sim_url/_sim/now" "$sim_pid"
  for _ in $(seq 1 600); do
    [ "$(grep -c 'customer_id=' "$work/sim-$n.out" || true)" -ge "$n" ] && break
    sleep 0.1
  done
  listen_port=$(free_port)
  lookback=$(python3 -c "print(int($history_days * 86400 + 3600))")

  run_one() { # IMPL: rust | python
    local impl=$1 sim0 sim1 records points c0 m0 c1 m1 wall cpu rss
    start_vm
    rm -rf "$work/state"
    mkdir -p "$work/state"
    $helper configs "$work/sim-$n.out" "$sim_url" "http://127.0.0.1:$fb_port" "$vm_url" \
      "$work/state" "$lookback" "127.0.0.1:$listen_port" "$work" "$in_flight" "$gzip" "$body_budget" "$output_concurrency" >/dev/null
    read -r c0 m0 < <($helper served "$sim_url")
    sim0=$(proc_cpu "$sim_pid")
    log "N=$n: $impl harvest"
    if [ "$impl" = rust ]; then
      # shellcheck disable=SC2086 # WRAP is a command prefix, split on purpose
      /usr/bin/time -v -o "$work/time-$impl-$n.txt" $wrap "$harvester" --config "$work/harvester.toml" \
        --once >"$work/$impl-$n.out" 2>"$work/$impl-$n.err" || { log "harvester failed"; tail -5 "$work/$impl-$n.err" >&2; }
    else
      # shellcheck disable=SC2086 # WRAP is a command prefix, split on purpose
      /usr/bin/time -v -o "$work/time-$impl-$n.txt" $wrap "$work/venv/bin/python" \
        "$root/benches/baseline/harvest.py" "$work/baseline.json" \
        >"$work/$impl-$n.out" 2>"$work/$impl-$n.err" || { log "baseline failed"; tail -5 "$work/$impl-$n.err" >&2; }
    fi
    sim1=$(proc_cpu "$sim_pid")
    read -r c1 m1 < <($helper served "$sim_url")
    records=$(( (c1 - c0) + (m1 - m0) ))
    points=$($helper count "$vm_url" "$records")
    read -r wall cpu rss < <(time_figures "$work/time-$impl-$n.txt")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$impl" "$n" "$records" "$points" "$wall" "$cpu" "$rss" \
      "$(python3 -c "print(round($records / max($wall, 0.01)))")" \
      "$(python3 -c "print(round($records / max($cpu, 0.01)))")" \
      "$(python3 -c "print(round($sim1 - $sim0, 2))")" >>"$results"
    [ "$records" = "$points" ] || log "N=$n $impl: $records records served but $points points in VictoriaMetrics"
    stop "$vm_pid"
  }

  run_one rust
  if [ "$idle" = 1 ]; then
    # The daemon on the state the --once run left: its first cycle reads only the overlap of
    # connections (nothing new) and the machine snapshot; then it waits an hour.
    start_vm
    $helper configs "$work/sim-$n.out" "$sim_url" "http://127.0.0.1:$fb_port" "$vm_url" \
      "$work/state" "$lookback" "127.0.0.1:$listen_port" "$work" "$in_flight" "$gzip" "$body_budget" "$output_concurrency" >/dev/null
    "$harvester" --config "$work/harvester.toml" >"$work/daemon-$n.out" 2>"$work/daemon-$n.err" &
    d_pid=$!
    pids+=("$d_pid")
    for _ in $(seq 1 1200); do
      [ "$($helper cycles "http://127.0.0.1:$listen_port/metrics")" -ge "$n" ] && break
      sleep 0.5
    done
    sleep 12 # idle: the daemon returns what its cycles freed to the OS within 10 s
    idle_kb[$n]=$(awk '/VmRSS/ {print $2}' "/proc/$d_pid/status")
    log "N=$n: idle daemon RSS ${idle_kb[$n]} kB"
    stop "$d_pid"
    stop "$vm_pid"
  fi
  if [ "$baseline" = 1 ]; then run_one python; fi
  stop "$sim_pid"
done

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average at start: $load_before, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data: sessions_per_day=$sessions_per_day history_days=$history_days page_size=$page_size; entities: connections + machines; max_requests_in_flight=${in_flight:-default}; body_budget=${body_budget:-default}; output.concurrency=${output_concurrency:-default}; gzip=${gzip:-default}"
column -t -s $'\t' "$results"
if [ "$idle" = 1 ] && [ "$#" -ge 2 ]; then
  first=$1
  last=${*: -1}
  echo
  for n in "$@"; do echo "idle daemon RSS, $n tenants: ${idle_kb[$n]} kB"; done
  python3 -c "print(f'idle cost per tenant: {(${idle_kb[$last]} - ${idle_kb[$first]}) / ($last - $first):.1f} kB ((RSS at $last - RSS at $first tenants) / $(( last - first )))')"
fi
log "work directory (logs, configs, results.tsv): $work"
