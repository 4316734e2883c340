#!/usr/bin/env bash
# Checks deploy/prometheus/ with the real tools: both scrape configurations, every rules
# file, every promtool unit test, and the Kubernetes relabelling in a real Prometheus.
# Runs every check, then fails if any failed. Needs Debian's `prometheus` package
# (prometheus, promtool) and PyYAML (in LIM_TEST_PYTHON, which the test command sets to its
# virtual environment's python, else python3); fails, never skips, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=deploy/prometheus
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v promtool >/dev/null ||
  die "promtool is missing: install Debian's prometheus package (apt-get install prometheus)"
command -v prometheus >/dev/null ||
  die "prometheus is missing: install Debian's prometheus package (apt-get install prometheus)"
python="${LIM_TEST_PYTHON:-python3}"
"$python" -c 'import yaml' 2>/dev/null ||
  die "PyYAML is missing from $python: pip install PyYAML (or Debian's python3-yaml)"

passed=0
failed=()
check() {
  printf '==> %s\n' "$*"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed+=("$*")
  fi
}

# Debian builds promtool without Kubernetes discovery; an upstream build checks the file as is.
k8s_probe="$(mktemp)"
trap 'rm -f "$k8s_probe"' EXIT
printf 'scrape_configs:\n  - job_name: probe\n    kubernetes_sd_configs:\n      - role: endpoints\n' >"$k8s_probe"

check promtool check config "$dir/prometheus.yml"
if promtool check config "$k8s_probe" >/dev/null 2>&1; then
  check promtool check config "$dir/kubernetes-sd.yml"
else
  printf '(this promtool has no Kubernetes discovery: %s is checked by the next step)\n' "$dir/kubernetes-sd.yml"
fi
check "$python" "$dir/tests/kubernetes_sd.py" "$dir/kubernetes-sd.yml"
for rules in "$dir"/rules/*.yml; do
  check promtool check rules "$rules"
done
for test in "$dir"/tests/*.yml; do
  check promtool test rules "$test"
done

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  echo "${passed} passed, ${#failed[@]} failed"
  exit 1
fi
echo "${passed} passed, 0 failed"
