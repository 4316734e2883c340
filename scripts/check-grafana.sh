#!/usr/bin/env bash
# Checks the Grafana dashboards of deploy/grafana:
#   1. deploy/grafana/generate.py type-checks (mypy --strict) against grafana-foundation-sdk,
#      whose types are generated from Grafana's published dashboard schema;
#   2. the committed dashboards/*.json are exactly what generate.py writes;
#   3. every committed dashboard reads back through the SDK's schema models losing nothing
#      (a key the schema does not know would be dropped);
#   4. structure: every panel and target uses ${datasource}, every target has an expr, no
#      `or vector(0)`, unique uids, only the known variables, every selector carries
#      job="$job", every metric and label is in METRICS.md or a recording rule of the
#      contract (and of deploy/prometheus when its rules exist);
#   5. every expression parses as PromQL (promtool check rules, variables substituted).
# Both Python tools come from PyPI. The test command passes its virtual environment in
# LIM_TEST_VENV; run alone, the script makes target/test-venv. A missing tool fails the
# script: it never skips a check.
#   scripts/check-grafana.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

venv="${LIM_TEST_VENV:-$root/target/test-venv}"
# The SDK's versions are "<epoch>!<grafana version>"; this one targets Grafana 11.6.
sdk_version='1769699379!11.6.0'
mypy_version='2.4.1'
tools=("grafana-foundation-sdk==$sdk_version" "mypy==$mypy_version")
installed() { "$venv/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(m.version("grafana-foundation-sdk") != sys.argv[1] or m.version("mypy") != sys.argv[2])' \
  "$sdk_version" "$mypy_version" 2>/dev/null; }
if ! installed; then
  log "installing ${tools[*]} into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || die "cannot create a Python virtual environment (python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${tools[@]}" \
    || die "cannot install ${tools[*]} from PyPI"
  installed || die "${tools[*]} are not what $venv holds after installing them"
fi
command -v promtool >/dev/null || die "promtool is needed to parse the expressions (Debian: prometheus)"
python="$venv/bin/python"
dir=deploy/grafana
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "mypy --strict: $dir/generate.py against the SDK's schema types"
"$venv/bin/mypy" --strict --cache-dir "$root/target/mypy-cache" "$dir/generate.py"

log "generate.py writes exactly the committed $dir/dashboards"
"$python" "$dir/generate.py" --out "$work/generated" >/dev/null
diff -ru "$dir/dashboards" "$work/generated" \
  || die "the committed dashboards differ from what generate.py writes (run: $python $dir/generate.py)"

log "every dashboard reads back through the SDK's schema models unchanged"
"$python" - "$dir"/dashboards/*.json <<'PY'
import json, sys
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

register_default_plugins()

def lost(want, got, path="$"):
    """Paths of `want` missing or different in `got` (the models may add defaults)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [path]
        return [p for k, v in want.items() for p in (lost(v, got[k], f"{path}.{k}") if k in got else [f"{path}.{k}"])]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [path]
        return [p for i, (a, b) in enumerate(zip(want, got)) for p in lost(a, b, f"{path}[{i}]")]
    return [] if want == got else [path]

bad = 0
for name in sys.argv[1:]:
    data = json.load(open(name, encoding="utf-8"))
    back = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    for p in lost(data, back):
        print(f"{name}: {p} is not in Grafana's dashboard schema", file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
PY

log "structure: datasource, expressions, variables, metric and label names"
"$python" - "$work/exprs.json" "$dir"/dashboards/*.json <<'PY'
import glob, json, re, sys

# The recording rules of the shared contract (deploy/prometheus defines them, and may add more).
CONTRACT = {
    "lim:http_requests:rate5m", "lim:http_request_errors:ratio_rate5m",
    "lim:http_request_duration_seconds:p95_5m", "lim:http_request_duration_seconds_bucket:rate5m",
    "lim:grpc_requests:rate5m", "lim:grpc_request_errors:ratio_rate5m", "lim:incidents_active:max",
    "lim:job_queue_depth:max", "lim:notifications:rate5m", "lim:llm_requests:rate5m",
    "lim:llm_request_errors:ratio_rate5m", "lim:llm_tokens:rate5m", "lim:llm_cost_dollars:increase1h",
    "lim:llm_request_duration_seconds:p95_5m", "lim:cache_hit_ratio:rate5m",
}
VARIABLES = {"job", "instance", "__rate_interval", "__interval", "__range"}
KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}

# METRICS.md: the rows of its tables name metrics (first cell), a type and labels (third cell).
metrics, histograms, labels = set(), set(), {"job", "instance", "le"}
for line in open("METRICS.md", encoding="utf-8"):
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 4 and cells[1].startswith("`"):
        names = re.findall(r"`([a-z_:]+)`", cells[1])
        metrics.update(names)
        if cells[2].startswith("histogram"):
            histograms.update(names)
        labels.update(re.findall(r"`([a-z_]+)`", cells[3]))
rules_defined = set()
for path in glob.glob("deploy/prometheus/**/*.y*ml", recursive=True):
    rules_defined.update(re.findall(r"^\s*-?\s*record:\s*['\"]?([\w:]+)", open(path, encoding="utf-8").read(), re.M))

errors = []
def err(where, msg):
    errors.append(f"{where}: {msg}")

def known_metric(name):
    if name.startswith("lim:"):
        return name in CONTRACT or name in rules_defined
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in metrics or (base in histograms)

def check_expr(where, expr):
    if re.search(r"\bor\s+vector\s*\(", expr):
        err(where, "hides a missing series with `or vector(...)`")
    for var in re.findall(r"\$\{?(\w+)", expr):
        if var not in VARIABLES:
            err(where, f"uses the variable ${var}, which the integration test does not substitute")
    def grouping(m):
        for label in re.findall(r"\w+", m.group(2)):
            if label not in labels:
                err(where, f"groups by `{label}`, a label METRICS.md does not list")
        return ""  # `sum by (x) (...)` becomes `sum (...)`: a call
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", grouping, expr)
    s = re.sub(r"\[[^\]]*\]", "", s)
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?", s):
        name, matchers, call = m.groups()
        if call or name in KEYWORDS:
            continue
        if not known_metric(name):
            err(where, f"names `{name}`, neither in METRICS.md nor a recording rule of the contract"
                + (" (nor in deploy/prometheus)" if name.startswith("lim:") and rules_defined else ""))
        if name.startswith("lim:") and rules_defined and name not in rules_defined:
            err(where, f"names the recording rule `{name}`, which deploy/prometheus does not define")
        if not matchers or 'job="$job"' not in matchers:
            err(where, f'`{name}` is selected without job="$job"')
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""):
            if label not in labels:
                err(where, f"matches on `{label}`, a label METRICS.md does not list")

out, uids, exprs = sys.argv[1], {}, []
for name in sys.argv[2:]:
    board = json.load(open(name, encoding="utf-8"))
    uid = board.get("uid")
    if not uid or uid in uids:
        err(name, f"uid {uid!r} is missing or also used by {uids.get(uid)}")
    uids[uid] = name
    if "llm-incident-manager" not in board.get("tags", []) or board.get("refresh") != "30s" \
            or board.get("time") != {"from": "now-1h", "to": "now"}:
        err(name, "tags, refresh or time range differ from llm-incident-manager / 30s / last 1h")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    if set(variables) != {"datasource", "job", "instance"}:
        err(name, f"variables are {sorted(variables)}, not datasource, job and instance")
    for v in variables.values():
        query = v.get("query", "")
        if v["type"] == "query":
            if v.get("datasource", {}).get("uid") != "${datasource}":
                err(f"{name} variable {v['name']}", "does not use ${datasource}")
            for metric in re.findall(r"label_values\((\w+)", query):
                if metric not in metrics:
                    err(f"{name} variable {v['name']}", f"names `{metric}`, not in METRICS.md")
    ids = set()
    for panel in board["panels"]:
        where = f"{name} panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            err(where, "repeats a panel id")
        ids.add(panel.get("id"))
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            err(where, "datasource is not ${datasource}")
        if not panel.get("targets"):
            err(where, "has no query")
        for target in panel.get("targets", []):
            tw = f"{where} {target.get('refId')}"
            if target.get("datasource", {}).get("uid") != "${datasource}":
                err(tw, "datasource is not ${datasource}")
            if not target.get("expr"):
                err(tw, "has no expr")
                continue
            check_expr(tw, target["expr"])
            exprs.append({"where": tw, "expr": target["expr"]})
json.dump(exprs, open(out, "w"))
for e in errors:
    print(e, file=sys.stderr)
print(f"{len(uids)} dashboards, {len(exprs)} expressions, {len(errors)} problems", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

log "promtool: every expression parses (variables substituted as the integration test does)"
"$python" - "$work/exprs.json" "$work/exprs.rules.yml" <<'PY'
import json, sys
subst = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
         "$job": "llm-incident-manager", "$instance": ".*"}
rules = []
for i, e in enumerate(json.load(open(sys.argv[1]))):
    expr = e["expr"]
    for k, v in subst.items():
        expr = expr.replace(k, v)
    # JSON strings are YAML scalars; the comment names the panel when promtool objects.
    rules.append(f"      # {e['where']}\n      - record: grafana_expr_{i}\n        expr: {json.dumps(expr)}\n")
open(sys.argv[2], "w").write("groups:\n  - name: grafana\n    rules:\n" + "".join(rules))
PY
promtool check rules "$work/exprs.rules.yml" >"$work/promtool.out" 2>&1 \
  || { cat "$work/promtool.out" >&2
       for i in $(grep -o 'grafana_expr_[0-9]*' "$work/promtool.out" | sort -u | sed 's/.*_//'); do
         "$python" -c 'import json, sys; e = json.load(open(sys.argv[1]))[int(sys.argv[2])]; print(e["where"] + ": " + e["expr"])' \
           "$work/exprs.json" "$i" >&2
       done
       die "promtool rejected the expressions above"; }
log "the Grafana dashboards are generated, schema-valid and consistent"
