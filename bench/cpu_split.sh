#!/usr/bin/env bash
# Where the CPU goes during one wrk run: ticks (1/100 s) of the service, of every PostgreSQL
# process and of the idle machine, read from /proc before and after. On 2 cores, 10 s are
# 2,000 ticks; what the three leave is mostly wrk's.
#   bench/cpu_split.sh [script] [connections] [seconds] [postgres|sqlite] [postgres admin URL]
# Extra `serve` arguments go in EXTRA, e.g. EXTRA="--config writers.toml".
set -euo pipefail
cd "$(dirname "$0")/.."
script="${1:-batch_dedup.lua}"; conns="${2:-16}"; secs="${3:-10}"; backend="${4:-postgres}"
admin="${5:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -p llm-incident-manager --bin llm-incident-manager >&2
bin=target/release/llm-incident-manager
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"; port="$(free_port)"; database=""
if [ "$backend" = postgres ]; then
  database="lim_cpu_$$_$RANDOM"
  psql "$admin" -qc "CREATE DATABASE $database" >/dev/null
  url="${admin%/*}/$database"
else
  url="sqlite://$dir/bench.db"
fi
# shellcheck disable=SC2086
"$bin" serve --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$(free_port)" \
  --metrics-addr "127.0.0.1:$(free_port)" --database-url "$url" --log-level warn ${EXTRA:-} &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null && wait "$pid" || true
  [ -n "$database" ] && psql "$admin" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready" && break; sleep 0.1; done

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

s0="$(service_ticks)"; p0="$(postgres_ticks)"; i0="$(idle_ticks)"
wrk -t2 -c"$conns" -d"${secs}s" -s "bench/$script" "http://127.0.0.1:$port" | grep -E 'Requests/sec|Non-2xx|Socket errors'
s1="$(service_ticks)"; p1="$(postgres_ticks)"; i1="$(idle_ticks)"
echo "CPU ticks over ${secs} s: service $((s1 - s0)), PostgreSQL $((p1 - p0)), idle $((i1 - i0))"
