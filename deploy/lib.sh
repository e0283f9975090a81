# Shared by deploy/*.sh: a background process tracked by a pid file.
# Callers set $pidfile and $name (and $log for wait_http) before using these.

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Stop politely (SIGTERM, up to 30 s for a clean shutdown), then for good.
stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    echo "$name: stopped"
  fi
  rm -f "$pidfile"
}

status() {
  if running; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; return 1; fi
}

# Poll URL $1 every $3 s for up to $2 s until it answers, then print "$name: ready (...)" with
# what the caller's ready_detail prints; a process that exits or never answers shows its log.
wait_http() {
  local url=$1 timeout=$2 step=$3 tries
  tries=$(awk -v t="$timeout" -v s="$step" 'BEGIN { print int(t / s) }')
  for _ in $(seq 1 "$tries"); do
    if curl -fs "$url" >/dev/null; then echo "$name: ready ($(ready_detail))"; return 0; fi
    if ! running; then echo "$name: exited during start-up; last log lines:"; tail -n 40 "$log"; exit 1; fi
    sleep "$step"
  done
  echo "$name: not ready after ${timeout}s; last log lines:"; tail -n 40 "$log"; exit 1
}
