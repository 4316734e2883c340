#!/usr/bin/env bash
# Checks deploy/kubernetes/ offline (no cluster, no network but PyPI and npm for the tools):
#  1. base/prometheusrule.yaml is what scripts/gen-prometheusrule.py makes of
#     deploy/prometheus/rules/*.yml;
#  2. kubectl kustomize renders the base and the example overlay (the overlay with its
#     secrets.env.example as secrets.env, in a copy: a real secrets.env is never read);
#  3. every object validates, strict, against the Kubernetes API of each version in
#     K8S_VERSIONS (PyPI kubernetes-validate), the ServiceMonitor and PrometheusRule with the
#     npm package @kubernetes-models/prometheus-operator (deploy/kubernetes/validate/, strict:
#     no field its typings do not know), and the objects agree with each other
#     (scripts/validate-kubernetes.py); secret.example.yaml and admin-pod.yaml are validated too.
# Fails, never skips, when a tool is missing. The Python tools go into the virtual
# environment LIM_TEST_VENV (default target/test-venv), as scripts/api-conformance.sh does;
# the npm package, at the versions of deploy/kubernetes/validate/package-lock.json, into
# target/kubernetes-validate-npm (npm ci), so that node_modules never lands in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The oldest Kubernetes minor the manifests promise, and the newest kubernetes-validate knows.
K8S_VERSIONS=(1.31.0 1.35.0)
tools=(kubernetes-validate==1.35.0 jsonschema==4.26.0 PyYAML==6.0.4)

# kubectl >= 1.27 (kustomize v5): Debian's kubernetes-client (1.20) is too old for `labels:`.
command -v kubectl >/dev/null \
  || die "kubectl is missing: install kubectl >= 1.27 (its built-in kustomize renders the manifests)"
command -v python3 >/dev/null || die "python3 is missing"
command -v node >/dev/null && command -v npm >/dev/null \
  || die "node and npm are missing: install Node.js >= 20 with npm (they validate the ServiceMonitor and PrometheusRule)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: install Node.js >= 20"

venv="${LIM_TEST_VENV:-$root/target/test-venv}"
have_tools() {
  "$venv/bin/python" - "${tools[@]}" <<'PY' 2>/dev/null
import importlib.metadata, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if importlib.metadata.version(name) != version:
        sys.exit(1)
PY
}
if ! have_tools; then
  log "installing ${tools[*]} into $venv"
  python3 -m venv "$venv" || die "cannot create a Python virtual environment (python3 -m venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${tools[@]}" \
    || die "cannot install ${tools[*]} from PyPI"
  have_tools || die "the virtual environment $venv does not hold ${tools[*]}"
fi
python="$venv/bin/python"

# Reinstalled only when package.json or the lockfile changed (npm ci installs exactly the lockfile).
npm_dir="$root/target/kubernetes-validate-npm"
npm_src=deploy/kubernetes/validate
if ! { cmp -s "$npm_src/package.json" "$npm_dir/package.json" \
       && cmp -s "$npm_src/package-lock.json" "$npm_dir/package-lock.json" \
       && [ -f "$npm_dir/node_modules/.package-lock.json" ]; }; then
  log "installing $npm_src (npm ci) into $npm_dir"
  # The @kubernetes-models packages declare node >= 22 but run on 20 (this check passes
  # there): npm's EBADENGINE warnings under Node 20 are expected.
  rm -rf "$npm_dir" && mkdir -p "$npm_dir" \
    && cp "$npm_src/package.json" "$npm_src/package-lock.json" "$npm_dir/" \
    || die "cannot prepare $npm_dir"
  npm ci --prefix "$npm_dir" --ignore-scripts --no-audit --no-fund >&2 \
    || die "cannot install $npm_src/package-lock.json from the npm registry (npm ci)"
fi
# Run from the install folder: the script's imports resolve in its node_modules.
cp "$npm_src/validate-crds.mjs" "$npm_dir/"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "deploy/kubernetes/base/prometheusrule.yaml is generated from deploy/prometheus/rules/*.yml"
"$python" scripts/gen-prometheusrule.py --output "$work/prometheusrule.yaml" \
  || die "scripts/gen-prometheusrule.py failed"
if ! diff -u deploy/kubernetes/base/prometheusrule.yaml "$work/prometheusrule.yaml"; then
  die "deploy/kubernetes/base/prometheusrule.yaml is out of date: run $python scripts/gen-prometheusrule.py"
fi

log "kubectl kustomize: deploy/kubernetes/base and deploy/kubernetes/overlays/example"
cp -r deploy/kubernetes "$work/kubernetes"
cp deploy/kubernetes/overlays/example/secrets.env.example "$work/kubernetes/overlays/example/secrets.env"
kubectl kustomize "$work/kubernetes/base" >"$work/base.yaml" \
  || die "deploy/kubernetes/base does not render (kubectl kustomize)"
kubectl kustomize "$work/kubernetes/overlays/example" >"$work/overlay-example.yaml" \
  || die "deploy/kubernetes/overlays/example does not render (kubectl kustomize)"

log "validating against Kubernetes ${K8S_VERSIONS[*]} (strict) and @kubernetes-models/prometheus-operator"
version_args=()
for version in "${K8S_VERSIONS[@]}"; do version_args+=(-k "$version"); done
cp deploy/kubernetes/secret.example.yaml deploy/kubernetes/admin-pod.yaml "$work/"
"$python" scripts/validate-kubernetes.py "${version_args[@]}" --crd-validator "$npm_dir/validate-crds.mjs" \
  "$work/base.yaml" "$work/overlay-example.yaml" "$work/secret.example.yaml" "$work/admin-pod.yaml" \
  || die "the Kubernetes manifests have the problems above"

log "the Kubernetes manifests render, validate and agree with the rule files"
