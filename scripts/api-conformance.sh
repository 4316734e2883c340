#!/usr/bin/env bash
# Checks the OpenAPI document against the running service: it must validate as OpenAPI
# 3.1 (openapi-spec-validator), and schemathesis, with every check, its stateful phase and
# a fixed seed, must find no request the API treats otherwise than the document says and
# no answer outside it. Both tools come from PyPI. Any
# finding fails the script. The test command passes its virtual environment in
# LIM_TEST_VENV; run alone, the script makes target/test-venv.
#   scripts/api-conformance.sh [BINARY]     (default: target/debug/llm-incident-manager)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
binary="${1:-target/debug/llm-incident-manager}"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[ -x "$binary" ] || die "no service binary at $binary (cargo build first)"

venv="${LIM_TEST_VENV:-$root/target/test-venv}"
tools=(schemathesis==4.32.5 openapi-spec-validator==0.9.0)
if ! "$venv/bin/python" -c 'import schemathesis, openapi_spec_validator' >/dev/null 2>&1; then
  log "installing ${tools[*]} into $venv"
  python3 -m venv "$venv" || die "cannot create a Python virtual environment (python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${tools[@]}" \
    || die "cannot install ${tools[*]} from PyPI"
fi

work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
# An admin key, sent with every request, so that the documented 401s are checked too
# (schemathesis' ignored_auth check sends requests without it); so many refusals come from
# one address that auth.max_failures is raised. A schedule, so that the schedule routes
# answer more than 404 (no route notifies anyone:
# the mail channel is only how its people are reached).
cat >"$work/conformance.toml" <<'TOML'
[channels.mail]
type = "email"
smtp = "smtp://127.0.0.1:1"
from = "incidents@example.com"
to = ["ops@example.com"]

[people.ana]
email = "ana@example.com"

[people.bo]
email = "bo@example.com"

[schedules.primary]
participants = ["ana", "bo"]
rotation = "daily"
start = "2026-01-05T09:00:00+01:00"
overrides = [{ from = "2026-02-01T00:00:00Z", to = "2026-02-02T00:00:00Z", who = "bo" }]

[auth]
max_failures = 1000000
TOML
key="$("$binary" keys create --name conformance --scope admin --config "$work/conformance.toml" \
  --database-url "sqlite://$work/conformance.db" 2>/dev/null)" || die "cannot create an API key"
"$binary" serve --config "$work/conformance.toml" --http-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$(free_port)" \
  --grpc-addr "127.0.0.1:$(free_port)" --database-url "sqlite://$work/conformance.db" --log-level error \
  2>"$work/service.log" &
service=$!
trap 'kill "$service" 2>/dev/null; wait "$service" 2>/dev/null; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fs -o /dev/null "$base/health/ready" && break; sleep 0.1; done
curl -fs -o "$work/openapi.json" "$base/openapi.json" || die "the service did not serve /openapi.json (log: $(cat "$work/service.log"))"

log "openapi-spec-validator: the document is OpenAPI 3.1"
"$venv/bin/openapi-spec-validator" --schema 3.1 --validation-errors all "$work/openapi.json"

log "schemathesis: every check, every phase, seed in scripts/schemathesis.toml"
# The working directory keeps schemathesis' caches away from the repository; the hooks
# keep the one rule a schema cannot state (see the file).
(cd "$work" && PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "$base/openapi.json" \
  -H "Authorization: Bearer $key" --checks all --phases examples,coverage,fuzzing,stateful --no-color) \
  || die "schemathesis found the problems above (each with a curl command that reproduces it)"
log "the API does what its document says"
