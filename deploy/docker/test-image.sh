#!/usr/bin/env bash
# The container path for real, as CI runs it (.ci/run), as root on a Debian 12 machine that
# reaches package registries but no image registry:
#   1. start a private Docker engine (dockerd, vfs, data under a temp dir, no iptables);
#   2. make the base images the Dockerfile names (debian:bookworm-slim, rust:1-bookworm) with
#      mmdebstrap and this machine's own Rust toolchain;
#   3. build deploy/docker/Dockerfile from the repository exactly as Docker sees it (BuildKit,
#      its .dockerignore), handing this host's CA bundle in as the `extra_ca` build secret;
#   4. check the image: non-root, no toolchain, no trace of the secret, its size;
#   5. on the host network: the simulator container and a harvester container harvest into a
#      real InfluxDB 1.6 on 127.0.0.1; the image's HEALTHCHECK command reports healthy; the
#      harvester container is replaced (stop, remove, new one on the same state volume) and
#      carries on from its watermarks: nothing lost, nothing re-read from `lookback`;
#   6. the Compose file: `docker-compose config` (Debian's docker-compose 1.29), then its
#      `demo` profile's simulator and harvester services on the engine (InfluxDB 2 and Grafana
#      images cannot be had here, so the harvester's output is unreachable and it spools).
# Everything it starts is stopped on exit. Prints each step's duration.
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$(pwd)

LOG_PREFIX=test-image
# shellcheck source=deploy/docker/lib.sh
. deploy/docker/lib.sh

# Debian's client: another `docker` on PATH may want buildx, which is not installed.
docker=/usr/bin/docker
image=citrix-harvester:ci
prefix=ch-ci-$$

# For working on this script: CH_TEST_IMAGE_DIR=DIR keeps the engine's data (base images,
# build cache) in DIR between runs instead of a fresh temp dir that is removed at the end.
reuse=${CH_TEST_IMAGE_DIR:-}
if [ -n "$reuse" ]; then
  mkdir -p "$reuse"
  work=$(cd "$reuse" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/ch-image.XXXXXX")
fi
chmod 0755 "$work"
dockerd_pid=""
influx_pid=""
created_env=""

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local status=$? pid
  set +e
  step_end
  if [ -S "$work/docker.sock" ] && [ -n "$dockerd_pid" ]; then
    if [ -f "$repo/deploy/compose/.env" ]; then
      (cd "$repo/deploy/compose" && timeout 60 docker-compose --profile demo down -v -t 5 >/dev/null 2>&1)
    fi
    # shellcheck disable=SC2046 # one id per word
    timeout 60 "$docker" rm -f -v $("$docker" ps -aq) >/dev/null 2>&1
  fi
  [ -n "$created_env" ] && rm -f "$created_env"
  stop_pids "$influx_pid" "$dockerd_pid"
  # Mounts dockerd may leave behind (it was stopped or killed) must go before the files.
  if [ -d "$work" ]; then
    unmount_under "$work"
    if [ -n "$reuse" ]; then
      rm -rf "$work/influxdb" "$work/image" "$work/rust-root" "$work"/*.tar "$work"/*.pem
    else
      rm -rf "$work"
    fi
  fi
  print_timings
  if [ "$status" -ne 0 ]; then log "exit status $status"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "install docker.io, mmdebstrap, docker-compose, influxdb"
missing=()
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q </dev/null >/dev/null
  # Package scripts that try to start services fail harmlessly in a container; check binaries.
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null || true
fi
for bin in /usr/bin/docker dockerd mmdebstrap docker-compose influxd curl python3; do
  command -v "$bin" >/dev/null 2>&1 || die "could not install $bin"
done
"$docker" --version
docker-compose --version

step "start dockerd"
start_dockerd "$work"

step "base images: debian:bookworm-slim and rust:1-bookworm (mmdebstrap, this machine's Rust)"
if [ -n "$reuse" ] && "$docker" image inspect debian:bookworm-slim rust:1-bookworm >/dev/null 2>&1; then
  log "reusing the base images in $work"
else
# Like Docker Hub's slim image: minbase without docs, manuals, locales and apt lists, and
# without ca-certificates (the Dockerfile must bring its own roots). The hook's $1 is
# mmdebstrap's, not ours.
# shellcheck disable=SC2016
slim_opts=(--variant=minbase
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
# The build image: a C toolchain for the linker and the host's Rust (cargo, rustc, std).
# Both root file systems are made at once (mostly downloads and unpacking).
sysroot=$(rustc --print sysroot)
mmdebstrap -q "${slim_opts[@]}" bookworm "$work/slim.tar" </dev/null >"$work/mm-slim.log" 2>&1 &
mm_slim=$!
mmdebstrap -q "${slim_opts[@]}" --include=gcc,libc6-dev,pkg-config,ca-certificates \
  bookworm "$work/rust-root" </dev/null >"$work/mm-rust.log" 2>&1 &
mm_rust=$!
wait "$mm_slim" || { cat "$work/mm-slim.log"; die "mmdebstrap (slim)"; }
wait "$mm_rust" || { cat "$work/mm-rust.log"; die "mmdebstrap (rust)"; }
"$docker" import "$work/slim.tar" debian:bookworm-slim >/dev/null
rm -f "$work/slim.tar"
mkdir -p "$work/rust-root/usr/local/rust/bin" "$work/rust-root/usr/local/cargo/bin"
cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$work/rust-root/usr/local/rust/bin/"
cp -a "$sysroot/lib" "$work/rust-root/usr/local/rust/"
ln -s /usr/local/rust/bin/cargo "$work/rust-root/usr/local/cargo/bin/cargo"
ln -s /usr/local/rust/bin/rustc "$work/rust-root/usr/local/cargo/bin/rustc"
tar --numeric-owner -C "$work/rust-root" -cf - . |
  "$docker" import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    - rust:1-bookworm >/dev/null
rm -rf "$work/rust-root"
fi

step "docker build -f deploy/docker/Dockerfile (BuildKit, extra_ca secret)"
# The secret: this host's CA bundle (TLS-inspecting networks) plus a marker line that must not
# reach any layer of the image.
marker="citrix-harvester-ci-secret-$$-$RANDOM$RANDOM"
{
  cat /etc/ssl/certs/ca-certificates.crt
  printf '# %s\n' "$marker"
} >"$work/extra-ca.pem"
build_start=$(date +%s)
"$docker" build --network host --progress plain \
  --secret "id=extra_ca,src=$work/extra-ca.pem" \
  -f deploy/docker/Dockerfile -t "$image" . </dev/null 2>&1 | tail -n 25
[ "${PIPESTATUS[0]}" -eq 0 ] || die "docker build"
log "image built in $(($(date +%s) - build_start)) s"

step "image: non-root, no toolchain, no secret, size"
user=$("$docker" image inspect -f '{{.Config.User}}' "$image")
[ "$user" = "10001:10001" ] || die "image user is '$user', want 10001:10001"
size=$("$docker" image inspect -f '{{.Size}}' "$image")
log "image size: $((size / 1000000)) MB; user $user"
[ "$size" -lt 200000000 ] || die "image is $((size / 1000000)) MB (bound 200 MB)"
"$docker" create --name "$prefix-files" "$image" >/dev/null
"$docker" export "$prefix-files" | tar -t >"$work/files.txt"
"$docker" rm "$prefix-files" >/dev/null
if grep -E '(^|/)(cargo|rustc|rustup|gcc|cc1|ld\.lld|rust-lld)(-[0-9.]+)?$|^usr/local/(rust|cargo)/|^src/|^out/|build-ca' "$work/files.txt"; then
  die "the image holds build files (above)"
fi
grep -qx 'usr/local/bin/citrix-harvester' "$work/files.txt" || die "no binary in the image"
"$docker" image save "$image" -o "$work/image.tar"
mkdir "$work/image"
tar -C "$work/image" -xf "$work/image.tar"
rm -f "$work/image.tar"
found=0
for layer in "$work"/image/*/layer.tar; do
  if tar -xOf "$layer" 2>/dev/null | grep -qaF "$marker"; then found=1; fi
done
rm -rf "$work/image"
[ "$found" -eq 0 ] || die "the build secret's marker is in an image layer"
# Same check over the metadata (history, config).
if "$docker" image inspect "$image" | grep -qF "$marker" ||
  "$docker" history --no-trunc "$image" | grep -qF "$marker"; then
  die "the build secret's marker is in the image metadata"
fi
log "no toolchain, no /src, no secret in $(wc -l <"$work/files.txt") files"

step "docker run --rm citrix-harvester demo (as the image's user, in its working directory)"
"$docker" run --rm --network none "$image" demo >"$work/demo.out" 2>&1 ||
  { tail -n 30 "$work/demo.out"; die "the demo failed in the container"; }
grep -q 'FAILED' "$work/demo.out" && { cat "$work/demo.out"; die "demo jobs FAILED"; }
grep -q '^Line protocol written to citrix-demo.lp$' "$work/demo.out" ||
  { cat "$work/demo.out"; die "the demo did not say where it wrote"; }
log "demo: $(grep -c . "$work/demo.out") lines of output, exit 0"

step "InfluxDB 1.6 on 127.0.0.1, simulator container on the host network"
influx_port=$(free_port)
influx_rpc_port=$(free_port)
mkdir -p "$work/influxdb"
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
influx="http://127.0.0.1:$influx_port"
wait_for 30 "InfluxDB answers /ping" curl -sf "$influx/ping"
curl -sf -XPOST "$influx/query" --data-urlencode 'q=CREATE DATABASE citrix' >/dev/null

sim_port=$(free_port)
sim_fallback=$(free_port)
sim="http://127.0.0.1:$sim_port"
# The image's HEALTHCHECK asks the harvester's /readyz, which a simulator does not serve.
"$docker" run -d --name "$prefix-sim" --network host --no-healthcheck "$image" simulate \
  --listen "127.0.0.1:$sim_port" --fallback-listen "127.0.0.1:$sim_fallback" \
  --tenants 3 --seed 42 >/dev/null
wait_for 30 "simulator container answers /_sim/stats" curl -sf "$sim/_sim/stats"

# The harvester's config: the compose demo config's tenants (the simulator's test
# credentials), the simulator on the host's loopback, InfluxDB 1.6 as the output.
sed -e "s#http://simulator:8400#$sim#g" -e "s#http://simulator:8401#http://127.0.0.1:$sim_fallback#g" \
  deploy/compose/harvester-demo.toml |
  python3 -c '
import re, sys
text = sys.stdin.read()
out = """[output]
kind = "influxdb_v1"
url = "%s"
database = "citrix"
""" % sys.argv[1]
print(re.sub(r"\[output\]\n(?:[^\[\n].*\n|\n)*", out + "\n", text, count=1), end="")
' "$influx" >"$work/harvester.toml"
chmod 0644 "$work/harvester.toml"
grep -q 'kind = "influxdb_v1"' "$work/harvester.toml" || die "config rewrite"
[ "$(grep -c '^\[\[tenant\]\]' "$work/harvester.toml")" = 3 ] || die "config rewrite lost tenants"

# Rows the simulator served so far, over every tenant and entity.
rows_served() {
  curl -sf "$sim/_sim/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(sum(t.get("rows_served", {}).values()) for t in s["tenants"].values()))'
}
# Points in InfluxDB over every citrix_* measurement (count(*) per field; a point's count is
# the largest of its fields' counts).
points_stored() {
  curl -sf -G "$influx/query" --data-urlencode db=citrix \
    --data-urlencode 'q=SELECT count(*) FROM /^citrix_/' | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"][0]
print(sum(max(v for v in s["values"][0][1:] if v is not None) for s in r.get("series", [])))'
}
# cycles_done CONTAINER N: at least N "Cycle finished." lines; fails at once (status 2) when
# the container has stopped.
cycles_done() {
  local n
  n=$("$docker" logs "$1" 2>&1 | grep -c '"Cycle finished."' || true)
  [ "$n" -ge "$2" ] && return 0
  [ "$("$docker" inspect -f '{{.State.Running}}' "$1")" = true ] || return 2
  return 1
}
cycles_all_ok() {
  ! "$docker" logs "$1" 2>&1 | grep '"Cycle finished."' | grep -q '"ok":false'
}

health_port=$(free_port)
harvester() {
  "$docker" run -d --name "$1" --network host \
    -v "$work/harvester.toml:/etc/citrix-harvester/citrix-harvester.toml:ro" \
    -v "$prefix-state:/var/lib/citrix-harvester" \
    -e "CITRIX_HARVESTER__HARVESTER__LISTEN=127.0.0.1:$health_port" \
    -e "CITRIX_HARVESTER_HEALTH_URL=http://127.0.0.1:$health_port/readyz" \
    --health-interval 2s --health-start-period 0s "$image" >/dev/null
}
health_is() { [ "$("$docker" inspect -f '{{.State.Health.Status}}' "$1")" = "$2" ]; }

step "harvester container #1: first cycle into InfluxDB, HEALTHCHECK, runs as 10001"
rows_before=$(rows_served)
harvester "$prefix-h1"
wait_for 180 "3 tenants' first cycles finished" cycles_done "$prefix-h1" 3 ||
  { "$docker" logs "$prefix-h1" 2>&1 | tail -n 30; die "container #1"; }
cycles_all_ok "$prefix-h1" || {
  "$docker" logs "$prefix-h1" 2>&1 | tail -n 30
  die "a cycle of container #1 failed"
}
wait_for 60 "the image's HEALTHCHECK command reports healthy" health_is "$prefix-h1" healthy
uid=$("$docker" exec "$prefix-h1" id -u)
[ "$uid" = 10001 ] || die "the harvester runs as uid $uid"
rows_first=$(($(rows_served) - rows_before))
points_first=$(points_stored)
log "container #1: simulator served $rows_first rows, InfluxDB holds $points_first points"
if [ "$rows_first" -lt 1000 ] || [ "$points_first" -lt 1000 ]; then die "too little harvested"; fi

step "replace the harvester container (stop, rm, new one on the same state volume)"
"$docker" stop -t 30 "$prefix-h1" >/dev/null
code=$("$docker" inspect -f '{{.State.ExitCode}}' "$prefix-h1")
[ "$code" = 0 ] || die "container #1 exited $code on docker stop"
"$docker" rm "$prefix-h1" >/dev/null
rows_mid=$(rows_served)
harvester "$prefix-h2"
wait_for 120 "3 tenants' cycles finished in container #2" cycles_done "$prefix-h2" 3 ||
  { "$docker" logs "$prefix-h2" 2>&1 | tail -n 30; die "container #2"; }
cycles_all_ok "$prefix-h2" || {
  "$docker" logs "$prefix-h2" 2>&1 | tail -n 30
  die "a cycle of container #2 failed"
}
wait_for 60 "container #2 reports healthy" health_is "$prefix-h2" healthy
rows_second=$(($(rows_served) - rows_mid))
points_second=$(points_stored)
log "container #2: simulator served $rows_second rows, InfluxDB holds $points_second points"
# Lost watermarks would re-read the whole lookback: about as many rows as the first cycle.
# From the watermarks only the overlap, the recent summary intervals and the snapshots.
[ $((rows_second * 5)) -lt "$rows_first" ] ||
  die "container #2 re-read $rows_second rows (first read $rows_first): watermarks not kept"
[ "$points_second" -ge "$points_first" ] || die "InfluxDB lost points: $points_first -> $points_second"
"$docker" stop -t 30 "$prefix-h2" >/dev/null
"$docker" rm -v "$prefix-h2" "$prefix-sim" -f >/dev/null
"$docker" volume rm "$prefix-state" >/dev/null

step "compose: docker-compose config, demo profile's simulator + harvester"
cd "$repo/deploy/compose"
if [ ! -f .env ]; then
  cp .env.example .env
  created_env="$repo/deploy/compose/.env"
fi
docker-compose config -q
HARVESTER_CONFIG=./harvester-demo.toml docker-compose --profile demo config -q
"$docker" tag "$image" citrix-harvester:local
# Not `docker-compose build`: this engine has no default bridge (--bridge=none), so builds
# need --network host, which the compose file does not impose on its users. The image is the
# one built above from the same Dockerfile and context.
# InfluxDB 2 and Grafana images cannot be had here (no image registry): --no-deps starts the
# two services built from this repository; the harvester's output (influxdb:8086) stays
# unreachable, so what it reads goes to its spool.
HARVESTER_CONFIG=./harvester-demo.toml docker-compose --profile demo up -d --no-build --no-deps \
  simulator harvester
compose_logs() { docker-compose logs --no-color harvester 2>&1; }
compose_cycles() { [ "$(compose_logs | grep -c '"Cycle finished."' || true)" -ge 3 ]; }
wait_for 180 "compose harvester finished a cycle for 3 tenants" compose_cycles ||
  { compose_logs | tail -n 30; die "compose harvester"; }
compose_logs | grep '"Cycle finished."' | grep -q '"records":0,' &&
  die "a compose tenant read no records"
compose_logs | grep -q 'spool' || log "note: no spool line in the compose harvester's log"
docker-compose --profile demo down -v -t 10
cd "$repo"
step_end
log "all container checks passed"
