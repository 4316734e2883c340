#!/usr/bin/env bash
# Ingest load benchmark: the release binary on a fresh SQLite database (WAL,
# synchronous=FULL: every 2xx is fsynced), driven by wrk on the same machine.
#   bench/ingest.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15}"
connections="${2:-64}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -p llm-incident-manager >&2
bin=target/release/llm-incident-manager

run() {
  local name="$1" script="$2" conns="$3"
  local dir port
  dir="$(mktemp -d)"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve --http-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" \
    --database-url "sqlite://$dir/bench.db" --log-level warn &
  local pid=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  echo "== $name: wrk -t2 -c$conns -d${duration}s -s bench/$script"
  wrk -t2 -c"$conns" -d"${duration}s" --latency -s "bench/$script" "http://127.0.0.1:$port"
  local stored
  curl -fs "http://127.0.0.1:$mport/metrics" | awk '
    /^incidents_total\{/ {created += $2}
    /^incidents_deduplicated_total\{/ {deduplicated += $2}
    /^incidents_resolved_total\{/ {resolved += $2}
    END {printf "stored: %d incidents opened, %d events deduplicated, %d incidents resolved\n", created, deduplicated, resolved}'
  
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

run "single events" single.lua "$connections"
run "batches of 100 events" batch.lua 16
run "batches of 100 events, 1,000 recurring fingerprints" batch_dedup.lua 16
run "batches of 100 events, steady state: 50 open and 50 resolve" batch_lifecycle.lua 16
