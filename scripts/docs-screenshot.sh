#!/usr/bin/env bash
# Renders /docs in headless Chromium inside a network namespace that has only loopback,
# so the page can load nothing but what the service serves, and saves a screenshot
# (default docs/api-reference.png). Needs root (unshare -n) and Debian's chromium.
#   scripts/docs-screenshot.sh [BINARY] [OUTPUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$(realpath "${1:-target/debug/llm-incident-manager}")"
output="$(realpath -m "${2:-docs/api-reference.png}")"
command -v chromium >/dev/null || { echo "chromium is required: apt-get install -y chromium" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/inside.sh" <<INSIDE
set -e
ip link set lo up
"$binary" serve --http-addr 127.0.0.1:18090 --metrics-addr 127.0.0.1:18091 --grpc-addr 127.0.0.1:18092 \
  --database-url "sqlite://$work/db.sqlite" --log-level warn &
service=\$!
for _ in \$(seq 1 50); do curl -fs -o /dev/null http://127.0.0.1:18090/docs && break; sleep 0.1; done
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-sync \
  --disable-background-networking --disable-component-update --user-data-dir="$work/profile" \
  --window-size=1280,1400 --virtual-time-budget=15000 --log-net-log="$work/netlog.json" \
  --screenshot="$output" http://127.0.0.1:18090/docs 2>"$work/chromium.log"
kill \$service
INSIDE
unshare -n sh "$work/inside.sh"
# What the page asked for: only this service (Chromium's own update checks, which fail in
# the namespace, are not the page's).
python3 - "$work/netlog.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1])).get("events", [])
urls = sorted({e.get("params", {}).get("url") for e in events} - {None})
page = [u for u in urls if "googleapis.com" not in u and "google.com" not in u]
print("requests of the page:", *page, sep="\n  ")
outside = [u for u in page if not u.startswith("http://127.0.0.1:18090/")]
sys.exit(f"the page asked for {outside}" if outside else 0)
PY
echo "screenshot: $output"
