#!/usr/bin/env bash
# Ingest of new events with realistic text, with and without severity and category: the
# offline classifier runs at ingest only for the events that name neither (target: within
# 5 % of the throughput of those that name both). Each round runs both, alternating.
#   bench/triage.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
rounds="${2:-3}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -p llm-incident-manager --bin llm-incident-manager >&2
bin=target/release/llm-incident-manager
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
summary="$(mktemp)"

run() {
  local name="$1" mode="$2" dir port mport pid output rate
  dir="$(mktemp -d)"; port="$(free_port)"; mport="$(free_port)"
  "$bin" serve --http-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" \
    --database-url "sqlite://$dir/bench.db" --log-level warn &
  pid=$!
  for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready" && break; sleep 0.1; done
  output="$(wrk -t2 -c16 -d"${duration}s" -s bench/batch_triage.lua "http://127.0.0.1:$port" -- "$mode")"
  echo "== $name"; echo "$output"
  if grep -qE 'Non-2xx|Socket errors' <<<"$output"; then echo "$name: some requests failed" >&2; exit 1; fi
  rate="$(echo "$output" | awk '/^Requests\/sec/ {print $2}')"
  awk -v name="$name" -v rate="$rate" 'BEGIN {printf "%s\t%.0f\n", name, rate * 100}' >>"$summary"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

for _ in $(seq 1 "$rounds"); do
  run "named severity and category" classified
  run "classified at ingest" unclassified
done
python3 - "$summary" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.rstrip("\n").split("\t")
    rates.setdefault(name, []).append(float(rate))
print()
for name, values in rates.items():
    print(f"{name:<32} {statistics.median(values):10.0f} events/s (median of {len(values)}: {', '.join(f'{v:.0f}' for v in values)})")
named, classified = (statistics.median(v) for v in rates.values())
print(f"classified at ingest keeps {100 * classified / named:.1f} % (target: at least 95 %)")
PY
rm -f "$summary"
