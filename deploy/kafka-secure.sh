#!/usr/bin/env bash
# A second, secured local Kafka broker (KRaft, single node) beside the plain one on 9092.
#   deploy/kafka-secure.sh start | wait | setup | up | stop | clean | status | env USER
# Clients: SASL_SSL + SCRAM-SHA-512 on 127.0.0.1:29092; inter-broker (29094) and controller
# (29093) listeners are TLS with a required client certificate. StandardAuthorizer, deny when no
# ACL matches; super users: the SCRAM admin and the broker's own certificate.
# At first start it generates, with openssl only: a CA, the broker certificate (SAN 127.0.0.1),
# and one random password per SCRAM user, kept in $RADSTREAM_STATE/kafka-secure/secrets (0600),
# never printed. Users: admin, worker, analytics, hospital-<id> for each id in
# $RADSTREAM_SECURE_HOSPITALS (default "H001 H002"); created at format time (--add-scram).
# `setup` creates the topics (contract + one intake topic per hospital) and the ACLs
# (services/ops/acl.py). Ports: RADSTREAM_SECURE_KAFKA_PORT (29092), _CONTROLLER_PORT (29093),
# _INTERNAL_PORT (29094).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${RADSTREAM_STATE:-$root/.state}
libs=$root/.cache/kafka/libs
dir=$state/kafka-secure
data=$dir/data
tls=$dir/tls
secrets=$dir/secrets
pidfile=$dir/kafka.pid
log=$dir/kafka.log
conf=$dir/server.properties
port=${RADSTREAM_SECURE_KAFKA_PORT:-29092}
controller_port=${RADSTREAM_SECURE_KAFKA_CONTROLLER_PORT:-29093}
internal_port=${RADSTREAM_SECURE_KAFKA_INTERNAL_PORT:-29094}
hospitals=${RADSTREAM_SECURE_HOSPITALS:-H001 H002}
app_id=${RADSTREAM_APP_ID:-radstream}
bootstrap=127.0.0.1:$port
py=${PYTHON:-$root/.venv/bin/python}

name=kafka-secure
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

users() { echo admin worker analytics; for h in $hospitals; do echo "hospital-$h"; done; }

# CA + broker certificate (PEM; the key is unencrypted PKCS#8, readable only by this user).
make_tls() {
  [ -f "$tls/broker.pem" ] && return 0
  mkdir -p "$tls"; chmod 700 "$tls"
  local ext=$tls/broker.ext
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/O=radstream/CN=radstream-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=radstream/CN=broker" \
    -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$ext"
  openssl x509 -req -days 825 -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$ext" -out "$tls/broker.crt" 2>/dev/null
  cat "$tls/broker.key" "$tls/broker.crt" >"$tls/broker.pem"
  chmod 600 "$tls"/*.key "$tls/broker.pem"
}

make_secrets() {
  mkdir -p "$secrets"; chmod 700 "$secrets"
  local u
  for u in $(users); do
    [ -f "$secrets/$u.password" ] || (umask 077; openssl rand -hex 24 >"$secrets/$u.password")
  done
}

start() {
  if [ -z "$(ls "$libs"/kafka_2.13-*.jar 2>/dev/null)" ]; then "$here/kafka.sh" fetch; fi
  if running; then echo "$name: already running (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$data"
  make_tls
  make_secrets
  sed -e "s|@CLIENT_PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
      -e "s|@INTERNAL_PORT@|$internal_port|g" -e "s|@TLS_DIR@|$tls|g" -e "s|@ADMIN_USER@|admin|g" \
      "$here/kafka/secure/server.properties" >"$conf"
  echo "log.dirs=$data" >>"$conf"
  if [ ! -f "$data/meta.properties" ]; then
    local scram=() u
    for u in $(users); do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(cat "$secrets/$u.password")]")
    done
    java -cp "$libs/*" kafka.tools.StorageTool format --ignore-formatted -c "$conf" \
      -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
      "${scram[@]}" >/dev/null
  fi
  nohup java -Xms128m -Xmx512m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$conf" >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "$name: started (pid $!, log $log)"
}

# The environment a client needs to connect as USER (password by file, never on screen).
client_env() {
  local u=${1:?usage: $0 env USER}
  [ -f "$secrets/$u.password" ] || { echo "$name: no such user: $u" >&2; exit 1; }
  printf 'export RADSTREAM_KAFKA=%s\n' "$bootstrap"
  printf 'export RADSTREAM_KAFKA_SECURITY=sasl_ssl\n'
  printf 'export RADSTREAM_KAFKA_USER=%s\n' "$u"
  printf 'export RADSTREAM_KAFKA_PASSWORD_FILE=%s\n' "$secrets/$u.password"
  printf 'export RADSTREAM_KAFKA_CA=%s\n' "$tls/ca.pem"
}

as_admin() {
  RADSTREAM_KAFKA_SECURITY=sasl_ssl RADSTREAM_KAFKA_USER=admin \
  RADSTREAM_KAFKA_PASSWORD_FILE="$secrets/admin.password" RADSTREAM_KAFKA_CA="$tls/ca.pem" \
  RADSTREAM_KAFKA_PASSWORD='' "$py" -m services.ops.acl "$@" --bootstrap "$bootstrap"
}

wait_ready() {
  as_admin wait --timeout "${1:-90}" \
    || { echo "$name: not ready; last log lines:"; tail -n 30 "$log" 2>/dev/null; exit 1; }
}

setup() {
  as_admin setup --app-id "$app_id" --hospitals "$(echo "$hospitals" | tr ' ' ',')"
}

case "${1:-}" in
  start) start ;;
  wait) wait_ready "${2:-90}" ;;
  setup) setup ;;
  up) start; wait_ready; setup ;;
  stop) stop ;;
  clean) stop; rm -rf "$dir" ;;
  status) status ;;
  env) client_env "${2:-}" ;;
  *) echo "usage: $0 start|wait|setup|up|stop|clean|status|env USER" >&2; exit 2 ;;
esac
