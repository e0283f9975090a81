# Shared by deploy/*.sh: a background process tracked by a pid file.
# Callers set $pidfile and $name before using these.

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
