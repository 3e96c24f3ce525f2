#!/usr/bin/env bash
# The packages for real, as CI runs them (.ci/run), as root on a Debian 12 machine:
#   1. build the .deb and the .rpm (deploy/package/build.sh); list the .rpm with `rpm -qlp`;
#   2. a real systemd as PID 1 in a container (a private Docker engine, an image made with
#      mmdebstrap), the host network, the simulator on the host's loopback;
#   3. dpkg -i: the files are where they belong, `systemd-analyze verify` on the installed
#      units, and nothing runs or is enabled before it is configured;
#   4. configure as README says (a tenant file, its secret in secrets.env), enable --now:
#      points are harvested;
#   5. a second tenant file and `systemctl reload`: it starts, the daemon is not restarted;
#   6. dpkg -i of the same package over itself: the edited configuration survives, the service
#      runs again on its state;
#   7. dpkg -r keeps configuration and state, dpkg -P removes the configuration.
# Limitation of this container, not of the unit (shared/containers-here.md): LoadCredential=
# files are unreadable to a DynamicUser= service here, so the secret goes by secrets.env.
# Everything it starts is stopped on exit. Prints each step's duration.
set -euo pipefail

cd "$(dirname "$0")/../.."
LOG_PREFIX=test-package
# shellcheck source=deploy/docker/lib.sh
. deploy/docker/lib.sh

docker=/usr/bin/docker
work=$(mktemp -d "${TMPDIR:-/tmp}/ch-package.XXXXXX")
chmod 0755 "$work"
dockerd_pid=""
sim_pid=""
box=ch-pkg-$$

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local status=$?
  set +e
  step_end
  if [ -n "$dockerd_pid" ]; then
    timeout 60 "$docker" rm -f -v "$box" >/dev/null 2>&1
  fi
  stop_pids "$sim_pid" "$dockerd_pid"
  unmount_under "$work"
  rm -rf "$work"
  print_timings
  if [ "$status" -ne 0 ]; then log "exit status $status"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_box COMMAND...: runs COMMAND in the systemd container.
in_box() { "$docker" exec "$box" "$@"; }

step "install docker.io, mmdebstrap, rpm"
missing=()
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q </dev/null >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null || true
fi
for bin in /usr/bin/docker dockerd mmdebstrap rpm python3; do
  command -v "$bin" >/dev/null 2>&1 || die "could not install $bin"
done

step "build the .deb and the .rpm (deploy/package/build.sh)"
bash deploy/package/build.sh
# build.sh cleared target/package only; the package directories hold this version's files.
deb="" rpm_file=""
for f in target/debian/*.deb; do deb=$f; done
for f in target/generate-rpm/*.rpm; do rpm_file=$f; done
{ [ -f "$deb" ] && [ -f "$rpm_file" ]; } || die "build.sh made no .deb or no .rpm"
log "built $deb ($(du -h "$deb" | cut -f1)) and $rpm_file ($(du -h "$rpm_file" | cut -f1))"

step "rpm -qlp: the .rpm's contents"
rpm -qlp "$rpm_file" | tee "$work/rpm-files"
for f in /usr/bin/citrix-harvester /etc/citrix-harvester/citrix-harvester.toml \
  /usr/lib/systemd/system/citrix-harvester.service /usr/lib/systemd/system/citrix-harvester@.service \
  /usr/share/man/man1/citrix-harvester.1 /usr/share/bash-completion/completions/citrix-harvester; do
  grep -qx "$f" "$work/rpm-files" || die ".rpm lacks $f"
done
rpm -qp --configfiles "$rpm_file" | grep -qx /etc/citrix-harvester/citrix-harvester.toml ||
  die ".rpm: the configuration is not a config file"

step "start dockerd; a systemd image (mmdebstrap)"
start_dockerd "$work"
# procps: the package depends on it (/bin/kill for ExecReload=), as a real system has it.
mmdebstrap --quiet --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates,procps \
  bookworm "$work/systemd.tar" </dev/null
"$docker" import --change 'CMD ["/sbin/init"]' "$work/systemd.tar" ch-systemd:ci >/dev/null
rm -f "$work/systemd.tar"

step "the simulator on the host's loopback"
port=$(free_port)
target/release/citrix-harvester simulate --listen "127.0.0.1:$port" --tenants 2 --seed 42 \
  >"$work/sim.log" 2>&1 &
sim_pid=$!
wait_for 30 "simulator answers" curl -fsS -o /dev/null "http://127.0.0.1:$port/_sim/stats"

step "systemd as PID 1 in a container; dpkg -i"
"$docker" run -d --name "$box" --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
  --security-opt apparmor=unconfined --network host --tmpfs /run --tmpfs /run/lock \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw ch-systemd:ci /sbin/init >/dev/null
system_up() {
  local s
  s=$(in_box systemctl is-system-running 2>/dev/null || true)
  [ "$s" = running ] || [ "$s" = degraded ]
}
wait_for 60 "systemd is up in the container" system_up
"$docker" cp "$deb" "$box:/tmp/citrix-harvester.deb"
in_box dpkg -i /tmp/citrix-harvester.deb
for f in /usr/bin/citrix-harvester /etc/citrix-harvester/citrix-harvester.toml \
  /lib/systemd/system/citrix-harvester.service /lib/systemd/system/citrix-harvester@.service \
  /lib/systemd/system/citrix-harvester-backfill.service /usr/share/man/man1/citrix-harvester.1.gz \
  /usr/share/bash-completion/completions/citrix-harvester /usr/share/doc/citrix-harvester/README.md; do
  in_box test -e "$f" || die "the .deb did not install $f"
done
in_box test -d /etc/citrix-harvester/tenants.d || die "no tenants.d"
[ "$(in_box stat -c %a /etc/citrix-harvester/secrets.env)" = 600 ] || die "secrets.env is not 0600"
in_box grep -qx /etc/citrix-harvester/citrix-harvester.toml /var/lib/dpkg/info/citrix-harvester.conffiles ||
  die "the configuration is not a conffile"
in_box systemctl is-enabled citrix-harvester.service >/dev/null 2>&1 && die "enabled by the install"
in_box systemctl is-active citrix-harvester.service >/dev/null 2>&1 && die "started by the install"
in_box systemd-analyze verify --man=no /lib/systemd/system/citrix-harvester.service \
  /lib/systemd/system/citrix-harvester-backfill.service

# tenant_file NAME CUSTOMER CLIENT VAR: a tenants.d file for one simulated tenant (seed 42's
# fixed test credentials, as in deploy/compose/harvester-demo.toml).
tenant_file() {
  cat <<TOML
[[tenant]]
name = "$1"
customer_id = "$2"
client_id = "$3"
client_secret_env = "$4"
token_url = "http://127.0.0.1:$port/cctrustoauth2/{customer_id}/tokens/clients"
fallback_token_url = ""
monitor_url = "http://127.0.0.1:$port/monitorodata"
entities = ["machines", "connections"]
TOML
}

step "configure: the main file, a tenant file, its secret; systemctl enable --now"
cat >"$work/main.toml" <<'TOML'
# Edited by the administrator: the upgrade below must keep this file as it is.
[harvester]
jitter = "1s"
lookback = "3d"
[output]
kind = "file"
path = "/var/lib/citrix-harvester/points.lp"
TOML
"$docker" cp "$work/main.toml" "$box:/etc/citrix-harvester/citrix-harvester.toml"
tenant_file "Muller" u7ztduzu0000 f0777ba5-0092-4c54-bf38-074a901ef237 SECRET_A >"$work/a.toml"
"$docker" cp "$work/a.toml" "$box:/etc/citrix-harvester/tenants.d/muller.toml"
printf 'SECRET_A=%s\nSECRET_B=%s\n' 'aRuwe+O9bnB/vvTZ4cZhEddF==' 'l7cXu+GMiOU/J9DRcGXjh10u==' \
  >"$work/secrets.env"
"$docker" cp "$work/secrets.env" "$box:/etc/citrix-harvester/secrets.env"
in_box chmod 0600 /etc/citrix-harvester/secrets.env
in_box systemctl enable --now citrix-harvester.service || {
  in_box journalctl -u citrix-harvester --no-pager | tail -n 40
  die "the service did not start"
}
# points_of NAME: the output holds a point of tenant NAME (1 while the file is not there yet:
# grep's 2 would tell wait_for to give up).
points_of() {
  in_box grep -qs "customer=$1" /var/lib/private/citrix-harvester/points.lp && return 0
  return 1
}
wait_for 90 "points of the first tenant" points_of Muller ||
  { in_box journalctl -u citrix-harvester --no-pager | tail -n 40; die "no points"; }
pid_before=$(in_box systemctl show -p MainPID --value citrix-harvester.service)

step "a second tenant file; systemctl reload (the daemon is not restarted)"
tenant_file "Northwind" ct8p3lzv0001 7e5f6f92-916a-498f-a731-8235e86a41ce SECRET_B >"$work/b.toml"
"$docker" cp "$work/b.toml" "$box:/etc/citrix-harvester/tenants.d/northwind.toml"
in_box systemctl reload citrix-harvester.service
wait_for 90 "points of the added tenant" points_of Northwind ||
  { in_box journalctl -u citrix-harvester --no-pager | tail -n 40; die "no points after reload"; }
in_box journalctl -u citrix-harvester --no-pager | grep -q '"added":1' ||
  die "no reload line counting one added tenant"
[ "$(in_box systemctl show -p MainPID --value citrix-harvester.service)" = "$pid_before" ] ||
  die "the reload restarted the daemon"

step "dpkg -i over itself: the edited configuration survives, the state stays"
marks_before=$(in_box sh -c 'ls /var/lib/private/citrix-harvester/checkpoints/*/ | wc -l')
in_box dpkg -i /tmp/citrix-harvester.deb
in_box grep -q "Edited by the administrator" /etc/citrix-harvester/citrix-harvester.toml ||
  die "the upgrade replaced the edited configuration"
in_box test -e /etc/citrix-harvester/tenants.d/northwind.toml || die "the upgrade lost a tenant file"
wait_for 30 "the service runs again" in_box systemctl is-active --quiet citrix-harvester.service
marks_after=$(in_box sh -c 'ls /var/lib/private/citrix-harvester/checkpoints/*/ | wc -l')
if [ "$marks_before" -eq 0 ] || [ "$marks_after" -lt "$marks_before" ]; then
  die "watermarks lost in the upgrade ($marks_before before, $marks_after after)"
fi

step "dpkg -r keeps configuration and state; dpkg -P removes the configuration"
in_box dpkg -r citrix-harvester
in_box test ! -e /usr/bin/citrix-harvester || die "the binary stayed after remove"
in_box test -e /etc/citrix-harvester/citrix-harvester.toml || die "remove took the configuration"
in_box test -d /var/lib/private/citrix-harvester/checkpoints || die "remove took the state"
in_box systemctl is-active --quiet citrix-harvester.service && die "still running after remove"
in_box dpkg -P citrix-harvester
in_box test ! -e /etc/citrix-harvester || die "purge left /etc/citrix-harvester"
log "the package installs, reloads, upgrades, removes and purges cleanly"
