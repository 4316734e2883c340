#!/usr/bin/env bash
# Ingest of new events through each front door, the same events and durability (a result
# means stored and fsynced): HTTP batches of 100 and single events, gRPC SubmitEvent, and
# gRPC StreamEvents (target: client-streamed events at least as many per second as HTTP
# batches). One load generator for all (examples/ingest_load.rs), 16 connections; a fresh
# server and SQLite database for each run; each round runs every mode.
#   bench/grpc.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
rounds="${2:-3}"
cargo build --release -p llm-incident-manager --bin llm-incident-manager --example ingest_load >&2
bin=target/release/llm-incident-manager
load=target/release/examples/ingest_load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
summary="$(mktemp)"
pid=""
# A load generator that fails must not leave its server running (and this script waiting).
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -f "$summary"' EXIT

run() {
  local mode="$1" dir port gport mport output
  dir="$(mktemp -d)"; port="$(free_port)"; gport="$(free_port)"; mport="$(free_port)"
  "$bin" serve --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$gport" --metrics-addr "127.0.0.1:$mport" \
    --database-url "sqlite://$dir/bench.db" --log-level warn &
  pid=$!
  for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready" && break; sleep 0.1; done
  output="$("$load" --mode "$mode" --http "http://127.0.0.1:$port" --grpc "http://127.0.0.1:$gport" \
    --connections 16 --seconds "$duration")"
  echo "$output"
  echo "$output" | awk -F'\t' '{split($3, rate, " "); print $1 "\t" rate[1]}' >>"$summary"
  kill -TERM "$pid"; wait "$pid" || true
  pid=""
  rm -rf "$dir"
}

for _ in $(seq 1 "$rounds"); do
  for mode in http-batch grpc-stream http-single grpc-unary; do run "$mode"; done
done
python3 - "$summary" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.rstrip("\n").split("\t")
    rates.setdefault(name, []).append(float(rate))
print()
for name, values in rates.items():
    print(f"{name:<12} {statistics.median(values):10.0f} events/s (median of {len(values)}: {', '.join(f'{v:.0f}' for v in values)})")
ratio = statistics.median(rates["grpc-stream"]) / statistics.median(rates["http-batch"])
print(f"gRPC streams carry {100 * ratio:.0f} % of what HTTP batches do (target: at least 100 %)")
PY
