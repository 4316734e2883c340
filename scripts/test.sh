#!/usr/bin/env bash
# Runs the whole test suite: the operations kit (rules, dashboards, manifests), formatting
# and lints, every test, then the API against its OpenAPI document (schemathesis). Installs or starts what the tests need when it is
# missing (Debian's prometheus, promtool, prometheus-alertmanager and strace; a PostgreSQL
# server; aiosmtpd, schemathesis and openapi-spec-validator from PyPI) and fails, never
# skips, when a component cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "apt-get is missing; install $* by hand"
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "cannot install $*"
}

# --- Prometheus and Alertmanager (real binaries; the tests run their own instances) ---
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
# strace: the durability test traces the order of fsync and answer.
command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi
for tool in prometheus promtool prometheus-alertmanager strace; do
  command -v "$tool" >/dev/null || die "$tool is required by the tests and could not be installed"
done

# --- PostgreSQL: the server at LIM_TEST_POSTGRES_URL, or one we start ---
export LIM_TEST_POSTGRES_URL="${LIM_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# Answers means the tests can log in and query, not only that something listens.
pg_answers() { psql -X -q -At -d "$LIM_TEST_POSTGRES_URL" -c 'SELECT 1' >/dev/null 2>&1; }

command -v psql >/dev/null || apt_install postgresql
if ! pg_answers; then
  log "PostgreSQL does not answer at $LIM_TEST_POSTGRES_URL; trying to start the local cluster"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    done
    for _ in $(seq 1 20); do pg_answers && break; sleep 0.5; done
  fi
fi
if ! pg_answers; then
  log "starting a throwaway PostgreSQL cluster"
  [ -d /usr/lib/postgresql ] || apt_install postgresql
  bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  cluster="$(mktemp -d /tmp/lim-pg.XXXXXX)"
  chown postgres "$cluster" 2>/dev/null || true
  as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_postgres "$bindir/initdb" -D "$cluster/data" -U postgres --auth=trust >/dev/null || die "initdb failed"
  port=55432
  as_postgres "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w \
    -o "-p $port -k $cluster -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null \
    || die "cannot start PostgreSQL (log: $cluster/log)"
  stop_cluster() { as_postgres "$bindir/pg_ctl" -D "$cluster/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$cluster"; }
  trap stop_cluster EXIT
  export LIM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  pg_answers || die "PostgreSQL is required by the tests and could not be started"
fi
log "PostgreSQL answers at $LIM_TEST_POSTGRES_URL"

# Databases left by an interrupted earlier run.
psql -q -At -d "$LIM_TEST_POSTGRES_URL" -c \
  "SELECT datname FROM pg_database WHERE datname LIKE 'lim\_test\_%'" |
  while read -r name; do
    psql -q -d "$LIM_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
  done || die "cannot list leftover test databases at $LIM_TEST_POSTGRES_URL"

# --- Python tools from PyPI: aiosmtpd (the SMTP server of the email tests), schemathesis
# and openapi-spec-validator (scripts/api-conformance.sh), PyYAML (scripts/check-*.sh) ---
export LIM_TEST_VENV="$PWD/target/test-venv"
python_tools=(aiosmtpd==1.4.6 schemathesis==4.32.5 openapi-spec-validator==0.9.0 PyYAML==6.0.4)
# An import, not `pip show`, which answers 0 when only some of the packages are there.
if ! "$LIM_TEST_VENV/bin/python" -c 'import aiosmtpd, schemathesis, openapi_spec_validator, yaml' >/dev/null 2>&1; then
  log "installing ${python_tools[*]} into $LIM_TEST_VENV"
  python3 -m venv "$LIM_TEST_VENV" || die "cannot create a Python virtual environment (python3 -m venv)"
  "$LIM_TEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${python_tools[@]}" \
    || die "cannot install ${python_tools[*]} from PyPI"
fi
export LIM_TEST_PYTHON="$LIM_TEST_VENV/bin/python"

# --- the operations kit of deploy/: promtool on the configuration, rules and their unit
# tests; the dashboards regenerated and checked against Grafana's schema; the Kubernetes
# manifests rendered (kubectl kustomize) and validated offline. Each script installs its
# own PyPI/npm tools into the virtual environment above (or under target/). ---
log "scripts/check-prometheus.sh"
scripts/check-prometheus.sh || die "the Prometheus configuration or rules have the problems above"
log "scripts/check-grafana.sh"
scripts/check-grafana.sh || die "the Grafana dashboards have the problems above"
log "scripts/check-kubernetes.sh"
scripts/check-kubernetes.sh || die "the Kubernetes manifests have the problems above"

# --- formatting and lints: CI holds them as it holds the tests ---
log "cargo fmt --check"
cargo fmt --all --check || die "cargo fmt would change the files above; run cargo fmt"
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --locked --all-targets -- -D warnings || die "clippy found the problems above"

# --- the tests ---
log "cargo test --workspace --lib --bins --tests"
output="$(mktemp)"
trap 'rm -f "$output"; [ "$(type -t stop_cluster)" = function ] && stop_cluster' EXIT
status=0
cargo test --workspace --locked --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$output" || status=$?
# One closing line for the whole run, summed over every test binary. A skipped test is
# a failure here (nothing may be skipped), and so is a binary that did not build or run.
ignored="$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^ignored/) n += $(i-1) } END { print n + 0 }' "$output")"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) g += $(i-1) } }
     END { printf "%d passed, %d failed, %d ignored\n", p, f, g }' "$output"
if [ "$status" -ne 0 ]; then
  echo "FAILED (cargo exited with $status)"
  exit "$status"
elif [ "$ignored" -ne 0 ]; then
  echo "FAILED ($ignored tests ignored; the suite skips nothing)"
  exit 1
fi

# --- the OpenAPI document against the running service (schemathesis, openapi-spec-validator) ---
log "scripts/api-conformance.sh"
cargo build --locked -p llm-incident-manager --bin llm-incident-manager
scripts/api-conformance.sh target/debug/llm-incident-manager || { echo "FAILED (API conformance)"; exit 1; }
echo "API conformance: no finding"
