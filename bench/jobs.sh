#!/usr/bin/env bash
# Job throughput: how many deliveries per second the executor gets through, on SQLite and
# on PostgreSQL, with a webhook receiver that answers at once (examples/receiver.rs).
# The release binary routes every incident to a webhook channel. First the script opens
# `jobs` incidents (batches of 100 events) with the channel pointed at a receiver that never
# answers in time and one worker, so that the deliveries stay queued; it stops that process
# (its one running job is handed back) and starts another with the channel pointed at the
# instant receiver and `concurrency` workers, and times it from its launch until the
# receiver has every delivery: the executor's own rate, start-up included.
#   bench/jobs.sh [jobs] [concurrency] [postgres admin URL]
# Needs a PostgreSQL server that the admin URL reaches (default: the one the test command
# uses); the script creates and drops its own database there.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${1:-20000}"
concurrency="${2:-32}"
admin_url="${3:-${LIM_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
cargo build --release -p llm-incident-manager --bin llm-incident-manager --example receiver >&2
bin=target/release/llm-incident-manager
work="$(mktemp -d)"
database="lim_bench_jobs_$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -X -q -d "$admin_url" -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() {
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done
  echo "$1 never answered" >&2
  exit 1
}

receiver_port="$(free_port)"
target/release/examples/receiver "127.0.0.1:$receiver_port" 0 &
pids+=($!)
wait_ready "http://127.0.0.1:$receiver_port/count"

# Deliveries the receiver has seen so far.
delivered() {
  curl -fs "http://127.0.0.1:$receiver_port/count" | awk '{print $1}'
}

# Opens $jobs incidents through the HTTP API, 100 events a request.
ingest() {
  python3 - "$1" "$jobs" "$2" <<'PY'
import http.client, json, sys
port, total, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", port)
for first in range(0, total, 100):
    events = [{"source": "sentinel", "title": f"drift {tag} {n}", "severity": "P2", "category": "model_drift",
               "labels": {"model": f"m{n % 50}"}} for n in range(first, min(first + 100, total))]
    connection.request("POST", "/v1/events", json.dumps(events), {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status // 100 != 2:
        sys.exit(f"ingest answered {response.status}")
PY
}

# A receiver that holds every delivery for 10 minutes: the queue fills while nothing leaves.
stalled_port="$(free_port)"
target/release/examples/receiver "127.0.0.1:$stalled_port" 600000 &
pids+=($!)
wait_ready "http://127.0.0.1:$stalled_port/count"

# A configuration whose one channel points at port $1, with $2 workers.
configure() {
  printf '[jobs]\nconcurrency = %s\n\n[channels.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:%s/hook"\n\n[[routes]]\nname = "all"\nchannels = ["hook"]\nnotify_on = ["created"]\n' \
    "$2" "$1" >"$work/config.toml"
}

# Starts the service on database $1 in the background; sets $pid, $port and $mport.
start() {
  port="$(free_port)"
  mport="$(free_port)"
  "$bin" serve --http-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" --database-url "$1" \
    --log-level error --config "$work/config.toml" &
  pid=$!
  pids+=("$pid")
}

run() {
  local name="$1" url="$2" started ended rate
  configure "$stalled_port" 1
  start "$url"
  wait_ready "http://127.0.0.1:$port/health/ready"
  ingest "$port" "$name"
  kill -TERM "$pid"; wait "$pid" || true
  configure "$receiver_port" "$concurrency"
  local before
  before="$(delivered)"
  started="$(date +%s.%N)"
  start "$url"
  while [ "$(delivered)" -lt $((before + jobs)) ]; do sleep 0.05; done
  ended="$(date +%s.%N)"
  rate="$(python3 -c "print(round($jobs / ($ended - $started)))")"
  printf '%-10s %6d jobs delivered at %6d jobs/s (concurrency %d)\n' "$name" "$jobs" "$rate" "$concurrency" \
    | tee -a "$work/summary"
  curl -fs "http://127.0.0.1:$mport/metrics" | grep -E '^job_executions_total\{job_type="notify"' >&2
  kill -TERM "$pid"; wait "$pid" || true
}

run sqlite "sqlite://$work/jobs.db"
psql -X -q -d "$admin_url" -c "CREATE DATABASE \"$database\"" >/dev/null
run postgres "$(python3 -c "import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path='/$database')))" "$admin_url")"
echo
echo "== summary"
cat "$work/summary"
