#!/usr/bin/env bash
# Local Apache Kafka (KRaft, single node) run with plain `java`, no Docker.
#   deploy/kafka.sh fetch | start | wait | topics | stop | status
# Jars come from Maven Central via deploy/kafka/pom.xml (the ~/.m2 cache is reused);
# data lives in $RADSTREAM_STATE (default .state/) and survives restarts until `clean`.
# RADSTREAM_KAFKA_PORT / RADSTREAM_KAFKA_CONTROLLER_PORT (9092 / 9093) move the listeners.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${RADSTREAM_STATE:-$root/.state}
libs=$root/.cache/kafka/libs
data=$state/kafka/data
pidfile=$state/kafka/kafka.pid
log=$state/kafka/kafka.log
conf=$state/kafka/server.properties
port=${RADSTREAM_KAFKA_PORT:-9092}
controller_port=${RADSTREAM_KAFKA_CONTROLLER_PORT:-9093}
bootstrap=127.0.0.1:$port
py=${PYTHON:-$root/.venv/bin/python}

fetch() {
  if [ -n "$(ls "$libs"/kafka_2.13-*.jar 2>/dev/null)" ]; then return 0; fi
  echo "kafka: fetching broker jars from Maven Central (cached in ~/.m2)"
  mvn -q -f "$here/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs"
}

name=kafka
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

start() {
  fetch
  if running; then echo "kafka: already running (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$data"
  # Ports are settable so a second broker (chaos tests, a secure profile) can run beside the first.
  sed -e "s/:9092/:$port/g" -e "s/:9093/:$controller_port/g" "$here/kafka/server.properties" >"$conf"
  echo "log.dirs=$data" >>"$conf"
  if [ ! -f "$data/meta.properties" ]; then
    java -cp "$libs/*" kafka.tools.StorageTool format --ignore-formatted -c "$conf" \
      -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" >/dev/null
  fi
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$conf" \
    >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "kafka: started (pid $!, log $log)"
}

wait_ready() {
  "$py" -m services.ops.wait_kafka --bootstrap "$bootstrap" --timeout "${1:-90}" \
    || { echo "kafka: not ready; last log lines:"; tail -n 30 "$log" 2>/dev/null; exit 1; }
}

topics() { "$py" -m services.ops.create_topics --bootstrap "$bootstrap"; }


case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  wait) wait_ready "${2:-90}" ;;
  topics) topics ;;
  up) start; wait_ready; topics ;;
  stop) stop ;;
  clean) stop; rm -rf "$state/kafka" ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|wait|topics|up|stop|clean|status" >&2; exit 2 ;;
esac
