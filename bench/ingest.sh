#!/usr/bin/env bash
# Ingest load benchmark: the release binary on a fresh SQLite database (WAL; every 2xx
# is fsynced), driven by wrk on the same machine, after a yardstick run of an axum
# handler that stores nothing (examples/null_server.rs), since the machine's speed drifts.
# Each workload runs twice: without routes, then with a route that notifies a webhook
# receiver answering in 5 s (examples/receiver.rs), so that every new incident writes a
# delivery job that the executor cannot finish during the run: ingest must not wait for it.
#   bench/ingest.sh [seconds] [connections for single events] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15}"
connections="${2:-64}"
rounds="${3:-1}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -p llm-incident-manager --bin llm-incident-manager --example null_server --example receiver >&2
bin=target/release/llm-incident-manager
summary="$(mktemp)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until `curl $@` succeeds; fails the benchmark if it never does.
wait_ready() {
  for _ in $(seq 1 50); do curl -fs -o /dev/null "$@" && return; sleep 0.1; done
  echo "the server at $* never answered" >&2
  exit 1
}

# wrk against $1, with script $2 and $3 connections; records "name: N requests/s".
drive() {
  local url="$1" script="$2" conns="$3" name="$4" per_request="$5" output rate
  echo "== $name: wrk -t2 -c$conns -d${duration}s -s bench/$script"
  output="$(wrk -t2 -c"$conns" -d"${duration}s" --latency -s "bench/$script" "$url")"
  echo "$output"
  if grep -qE 'Non-2xx|Socket errors' <<<"$output"; then
    echo "$name: some requests failed; no figure recorded" >&2
    exit 1
  fi
  rate="$(echo "$output" | awk '/^Requests\/sec/ {print $2}')"
  awk -v name="$name" -v rate="$rate" -v n="$per_request" \
    'BEGIN {printf "%-58s %10.0f requests/s %10.0f events/s\n", name, rate, rate * n}' >>"$summary"
}

yardstick() {
  local port pid
  port="$(free_port)"
  target/release/examples/null_server "127.0.0.1:$port" &
  pid=$!
  wait_ready -X POST -H 'content-type: application/json' -d '[]' "http://127.0.0.1:$port/v1/events"
  drive "http://127.0.0.1:$port" single.lua "$connections" "yardstick: axum handler that stores nothing" 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run() {
  local name="$1" script="$2" conns="$3" per_request="$4" config="${5:-}"
  local dir port mport pid
  dir="$(mktemp -d)"
  port="$(free_port)"
  mport="$(free_port)"
  local with_config=()
  [ -n "$config" ] && with_config=(--config "$config")
  "$bin" serve --http-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" \
    --database-url "sqlite://$dir/bench.db" --log-level warn "${with_config[@]}" &
  pid=$!
  wait_ready "http://127.0.0.1:$port/health/ready"
  drive "http://127.0.0.1:$port" "$script" "$conns" "$name" "$per_request"
  curl -fs "http://127.0.0.1:$mport/metrics" | awk '
    /^incidents_total\{/ {created += $2}
    /^incidents_deduplicated_total\{/ {deduplicated += $2}
    /^incidents_resolved_total\{/ {resolved += $2}
    /^job_queue_depth\{job_type="notify"\}/ {queued = $2}
    END {printf "stored: %d incidents opened, %d events deduplicated, %d incidents resolved, %d deliveries queued\n", created, deduplicated, resolved, queued}'
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

# A receiver that answers every delivery after 5 s, and a route to it for every incident.
slow_port="$(free_port)"
target/release/examples/receiver "127.0.0.1:$slow_port" 5000 &
slow_receiver=$!
routed="$(mktemp)"
printf '[channels.slow]\ntype = "webhook"\nurl = "http://127.0.0.1:%s/hook"\n\n[[routes]]\nname = "all"\nchannels = ["slow"]\n' \
  "$slow_port" >"$routed"
trap 'kill "$slow_receiver" 2>/dev/null; rm -f "$routed"' EXIT

for _ in $(seq 1 "$rounds"); do
  yardstick
  run "single events" single.lua "$connections" 1
  run "single events, routed to a 5 s webhook" single.lua "$connections" 1 "$routed"
  run "batches of 100, every event a new incident" batch.lua 16 100
  run "batches of 100, every event new, routed to a 5 s webhook" batch.lua 16 100 "$routed"
  run "batches of 100, 1,000 recurring fingerprints" batch_dedup.lua 16 100
  run "batches of 100, 1,000 recurring, routed to a 5 s webhook" batch_dedup.lua 16 100 "$routed"
  run "batches of 100, steady state: 50 open and 50 resolve" batch_lifecycle.lua 16 100
  run "batches of 100, steady state, routed to a 5 s webhook" batch_lifecycle.lua 16 100 "$routed"
done
echo
echo "== summary"
cat "$summary"
# Over several rounds: each workload's median, and what a route to the slow webhook keeps
# of it (the rounds interleave the two, so a drift of the machine touches both alike).
python3 - "$summary" <<'PY'
import re, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = re.match(r"(.*?)\s+\d+ requests/s\s+(\d+) events/s", line).groups()
    rates.setdefault(name, []).append(int(rate))
print(f"\n== medians of {max(len(r) for r in rates.values())} rounds")
medians = {name: statistics.median(values) for name, values in rates.items()}
for name, median in medians.items():
    print(f"{name:<58} {median:10.0f} events/s")
print("\n== kept with a route to a 5 s webhook")
names = list(medians)
for plain, routed in zip(names, names[1:]):
    if "routed to a 5 s webhook" in routed and "routed" not in plain:
        print(f"{plain:<58} {100 * medians[routed] / medians[plain]:5.1f} %")
PY
rm -f "$summary"
