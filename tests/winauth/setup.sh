#!/usr/bin/env bash
# Sets up the real Windows-authentication parts of the on-premises tests, on loopback only:
#   - a Python venv with PyPI pyspnego (NTLM and Negotiate acceptor; Kerberos through the
#     `krb5` binding, built against Debian's libkrb5-dev), reused when it already exists;
#   - an NTLM user file (NTLM_USER_FILE) with the harvester's service account;
#   - Debian's MIT krb5 KDC with a private realm HARVEST.TEST on 127.0.0.1:<free port> (TCP),
#     the same account (pre-authentication required, as in AD) and HTTP/localhost in a keytab;
#   - a throwaway CA with a server certificate for `localhost` (no IP address in it) and a
#     second, unrelated CA, for the acceptor's HTTPS mode (CH_TEST_TLS_DIR).
# Usage: setup.sh WORKDIR KDC_PORT — writes WORKDIR/winauth.env (lines to `source`) and
# WORKDIR/krb5kdc.pid; the caller stops the KDC. Prints the duration of each step.
set -euo pipefail

work=$1
port=$2
here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'winauth-setup: %s\n' "$*" >&2; }
timed() {
  local t0=$SECONDS
  "$@"
  log "$1 took $((SECONDS - t0)) s"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

realm=HARVEST.TEST
user=svc-harvester
# Test-only secrets of a throwaway realm that lives for one test run.
password="Harvest-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

install_packages() {
  local missing=()
  command -v krb5kdc >/dev/null 2>&1 || [ -x /usr/sbin/krb5kdc ] || missing+=(krb5-kdc)
  command -v kadmin.local >/dev/null 2>&1 || [ -x /usr/sbin/kadmin.local ] || missing+=(krb5-admin-server)
  [ -f /usr/include/krb5.h ] || [ -f /usr/include/krb5/krb5.h ] || missing+=(libkrb5-dev)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  /usr/bin/python3 -c 'import venv' 2>/dev/null || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing from Debian's packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q </dev/null >/dev/null
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null || true
  fi
}

make_venv() {
  # Kept between runs (the `krb5` sdist takes about a minute and a half to build).
  venv=${CH_WINAUTH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/citrix-harvester/winauth-venv}
  if ! "$venv/bin/python" -c 'import spnego, krb5' 2>/dev/null; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'pyspnego[kerberos]==0.12.*' </dev/null
  fi
}

make_realm() {
  local kdc_port=$1 kdir=$work/krb5
  mkdir -p "$kdir"
  cat >"$kdir/krb5.conf" <<CONF
[libdefaults]
  default_realm = $realm
  dns_lookup_kdc = false
  dns_lookup_realm = false
  rdns = false
  udp_preference_limit = 1
  default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
  default_tgs_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
  permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
[realms]
  $realm = {
    kdc = tcp/127.0.0.1:$kdc_port
  }
CONF
  cat >"$kdir/kdc.conf" <<CONF
[kdcdefaults]
  kdc_ports = ""
  kdc_tcp_ports = $kdc_port
[realms]
  $realm = {
    database_name = $kdir/principal
    key_stash_file = $kdir/stash
    kdc_ports = ""
    kdc_tcp_ports = $kdc_port
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }
[logging]
  kdc = FILE:$kdir/kdc.log
CONF
  export KRB5_CONFIG=$kdir/krb5.conf KRB5_KDC_PROFILE=$kdir/kdc.conf
  local master
  master=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  /usr/sbin/kdb5_util create -s -r "$realm" -P "$master" >/dev/null
  /usr/sbin/kadmin.local -r "$realm" -q "addprinc -pw $password +requires_preauth $user" >/dev/null 2>&1
  /usr/sbin/kadmin.local -r "$realm" -q "addprinc -randkey HTTP/localhost" >/dev/null 2>&1
  /usr/sbin/kadmin.local -r "$realm" -q "ktadd -k $kdir/http.keytab HTTP/localhost" >/dev/null
  /usr/sbin/krb5kdc -n -P "$work/krb5kdc.pid" >"$kdir/krb5kdc.out" 2>&1 &
  echo $! >"$work/krb5kdc.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$kdc_port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "krb5kdc did not listen on 127.0.0.1:$kdc_port"
  cat "$kdir/krb5kdc.out" "$kdir/kdc.log" >&2 || true
  return 1
}

# ca.pem signs server.pem (CN and SAN localhost, valid for two days); other-ca.pem signs nothing
# the acceptor serves.
make_certs() {
  local dir=$work/tls
  mkdir -p "$dir"
  local ca
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=citrix-harvester test $ca" -keyout "$dir/$ca.key" -out "$dir/$ca.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf '%s\n' subjectAltName=DNS:localhost basicConstraints=CA:FALSE \
    keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}

timed install_packages
timed make_venv
printf '%s:%s:%s\n' "$realm" "$user" "$password" >"$work/ntlm-users"
timed make_realm "$port"
timed make_certs

cat >"$work/winauth.env" <<ENV
export CH_TEST_WINAUTH_PYTHON=$venv/bin/python
export CH_TEST_WINAUTH_ACCEPTOR=$here/acceptor.py
export NTLM_USER_FILE=$work/ntlm-users
export KRB5_CONFIG=$work/krb5/krb5.conf
export KRB5_KTNAME=$work/krb5/http.keytab
export CH_TEST_KDC_URL=tcp://127.0.0.1:$port
export CH_TEST_TLS_DIR=$work/tls
export CH_TEST_WINAUTH_USER='$realm\\$user'
export CH_TEST_WINAUTH_PASSWORD=$password
ENV
log "ready: realm $realm, KDC on 127.0.0.1:$port"
