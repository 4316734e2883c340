#!/usr/bin/env bash
# PostgreSQL ingest next to SQLite in the same round: single events at 64 connections and
# batches of 100 at 16 (every event new; an alert storm over 1,000 recurring fingerprints;
# the steady state of bench/ingest.sh), each run on a fresh database (PostgreSQL: a database
# created for the run on the local server, trust auth; SQLite: a file in a fresh folder).
# Every 2xx is durable on both: SQLite fsyncs its WAL, PostgreSQL commits with
# synchronous_commit on. Each run also prints where the CPU went: ticks (1/100 s) of the
# service, of every PostgreSQL process and of the idle machine, read from /proc before and
# after wrk (on 2 cores a 10-second run has 2,000; what the three leave is mostly wrk's).
#   bench/postgres.sh [seconds] [rounds] [postgres admin URL]
# Extra `serve` arguments go in EXTRA, e.g. EXTRA="--config writers.toml".
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
rounds="${2:-3}"
admin="${3:-postgres://postgres@127.0.0.1:5432/postgres}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is required: apt-get install -y postgresql-client" >&2; exit 1; }
cargo build --release -p llm-incident-manager --bin llm-incident-manager >&2
bin=target/release/llm-incident-manager
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
summary="$(mktemp)"
service_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
postgres_ticks() {
  local total=0 ticks
  for process in $(pgrep -x postgres || true); do
    ticks="$(awk '{print $14 + $15}' "/proc/$process/stat" 2>/dev/null || echo 0)"
    total=$((total + ticks))
  done
  echo "$total"
}
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
pid=""
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -f "$summary"' EXIT

run() {
  local backend="$1" name="$2" script="$3" conns="$4" per_request="$5" dir port gport mport url database output rate
  dir="$(mktemp -d)"; port="$(free_port)"; gport="$(free_port)"; mport="$(free_port)"
  if [ "$backend" = postgres ]; then
    database="lim_bench_$$_$RANDOM"
    psql "$admin" -qc "CREATE DATABASE $database" >/dev/null
    url="${admin%/*}/$database"
  else
    url="sqlite://$dir/bench.db"
  fi
  "$bin" serve --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$gport" --metrics-addr "127.0.0.1:$mport" \
    --database-url "$url" --log-level warn ${EXTRA:-} &
  pid=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready" && break; sleep 0.1; done
  local s0 p0 i0
  s0="$(service_ticks)"; p0="$(postgres_ticks)"; i0="$(idle_ticks)"
  output="$(wrk -t2 -c"$conns" -d"${duration}s" -s "bench/$script" "http://127.0.0.1:$port")"
  echo "== $backend, $name (wrk -t2 -c$conns -d${duration}s -s bench/$script)"; echo "$output"
  echo "CPU ticks: service $(($(service_ticks) - s0)), PostgreSQL $(($(postgres_ticks) - p0)), idle $(($(idle_ticks) - i0))"
  if grep -qE 'Non-2xx|Socket errors' <<<"$output"; then echo "$backend $name: some requests failed" >&2; exit 1; fi
  rate="$(echo "$output" | awk '/^Requests\/sec/ {print $2}')"
  awk -v name="$backend, $name" -v rate="$rate" -v n="$per_request" 'BEGIN {printf "%s\t%.0f\t%.0f\n", name, rate, rate * n}' >>"$summary"
  kill -TERM "$pid"; wait "$pid" || true
  pid=""
  rm -rf "$dir"
  if [ "$backend" = postgres ]; then psql "$admin" -qc "DROP DATABASE $database WITH (FORCE)" >/dev/null; fi
}

for _ in $(seq 1 "$rounds"); do
  for backend in sqlite postgres; do
    run "$backend" "single events, 64 connections" single.lua 64 1
    run "$backend" "batches of 100 new events, 16 connections" batch.lua 16 100
    run "$backend" "batches of 100, alert storm, 16 connections" batch_dedup.lua 16 100
    run "$backend" "batches of 100, steady state, 16 connections" batch_lifecycle.lua 16 100
  done
done
python3 - "$summary" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, requests, events = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(requests), float(events)))
print()
for name, values in rows.items():
    requests = statistics.median(v[0] for v in values)
    events = statistics.median(v[1] for v in values)
    each = ", ".join(f"{v[1]:.0f}" for v in values)
    print(f"{name:<52} {requests:9.0f} requests/s {events:9.0f} events/s (median of {len(values)}: {each})")
PY
