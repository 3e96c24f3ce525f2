#!/usr/bin/env bash
# Shell helpers shared by the CI scripts that drive a real Docker engine
# (deploy/docker/test-image.sh, deploy/package/test-package.sh): log lines with the script's
# name, timed steps (each step's duration printed, and a table at the end), a free loopback
# port, and bounded polling. Source it; it defines functions and the `timings` array only.

log() { printf '%s: %s\n' "${LOG_PREFIX:-ci}" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

step_name=""
step_start=0
timings=()
step() {
  step_end
  step_name=$*
  step_start=$(date +%s)
  printf '\n--> %s\n' "$step_name"
}
step_end() {
  if [ -n "$step_name" ]; then
    printf '<-- %s: %ss\n' "$step_name" "$(($(date +%s) - step_start))"
    timings+=("$(printf '%5ss  %s' "$(($(date +%s) - step_start))" "$step_name")")
  fi
  step_name=""
}
print_timings() {
  if [ "${#timings[@]}" -gt 0 ]; then
    printf '\n%s steps:\n' "${LOG_PREFIX:-ci}"
    printf '  %s\n' "${timings[@]}"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every half second; exit status 2 of
# COMMAND means "the thing waited on has stopped": give up at once.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((secs * 2))); do
    local rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      log "$what (after ~$((i / 2)) s)"
      return 0
    fi
    if [ "$rc" -eq 2 ]; then
      log "$what: gave up, the thing waited on has stopped"
      return 1
    fi
    sleep 0.5
  done
  log "$what: not within $secs s"
  return 1
}

# start_dockerd DIR: a private engine (vfs, no iptables, no bridge) with its data, sockets and
# log under DIR; sets dockerd_pid and exports DOCKER_HOST and DOCKER_BUILDKIT.
start_dockerd() {
  local dir=$1
  mkdir -p "$dir/docker-data" "$dir/docker-exec"
  dockerd --iptables=false --bridge=none --storage-driver=vfs \
    --data-root="$dir/docker-data" --exec-root="$dir/docker-exec" \
    --pidfile="$dir/dockerd.pid" -H "unix://$dir/docker.sock" >"$dir/dockerd.log" 2>&1 &
  # shellcheck disable=SC2034 # read by the sourcing script
  # shellcheck disable=SC2034 # read by the sourcing script
  dockerd_pid=$!
  export DOCKER_HOST="unix://$dir/docker.sock" DOCKER_BUILDKIT=1
  wait_for 60 "dockerd answers" /usr/bin/docker info || {
    tail -n 30 "$dir/dockerd.log"
    die dockerd
  }
}

# stop_pids PID...: TERM, up to 30 s, then KILL.
stop_pids() {
  local pid
  for pid in "$@"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  for pid in "$@"; do
    if [ -n "$pid" ]; then
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  return 0
}

# unmount_under DIR: mounts an engine left behind under DIR (it was stopped or killed).
unmount_under() {
  grep -o " $1/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
}
