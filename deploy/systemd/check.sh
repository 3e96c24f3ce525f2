#!/usr/bin/env bash
# Checks the unit files as systemd itself reads them: `systemd-analyze verify` (syntax, unknown
# directives, dependencies) and `systemd-analyze security --offline=true` (exposure must stay at
# or below MAX_EXPOSURE, default 2.0). verify insists that ExecStart's binary exists, so the
# units are checked as temporary copies whose ExecStart points at a stub; nothing is installed.
# Needs no running systemd (works in a container); installs the `systemd` package when
# systemd-analyze is missing and we are root.
set -euo pipefail

max="${MAX_EXPOSURE:-2.0}"
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends systemd </dev/null
  else
    echo "systemd-analyze is missing (install the systemd package)" >&2
    exit 1
  fi
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ch-units.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$tmp/citrix-harvester"
chmod 0755 "$tmp/citrix-harvester"

units=()
for unit in "$here"/*.service; do
  name="$(basename "$unit")"
  # A template is checked as one of its instances (shard 0 of 4).
  name="${name/@.service/@0-4.service}"
  sed "s#/usr/bin/citrix-harvester#$tmp/citrix-harvester#g" "$unit" >"$tmp/$name"
  units+=("$tmp/$name")
done

echo "systemd-analyze verify ${units[*]##*/}"
systemd-analyze verify --man=no "${units[@]}"

status=0
for unit in "${units[@]}"; do
  score="$(systemd-analyze security --offline=true --no-pager "$unit" |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
  if [ -z "$score" ]; then
    echo "${unit##*/}: no exposure score in systemd-analyze's output" >&2
    status=1
  elif awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
    echo "${unit##*/}: exposure $score is above $max" >&2
    status=1
  else
    echo "${unit##*/}: exposure $score (at most $max)"
  fi
done
exit "$status"
