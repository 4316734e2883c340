#!/usr/bin/env python3
"""Validates Kubernetes manifests offline; scripts/check-kubernetes.sh runs it.

- Core kinds: kubernetes-validate's schemas of each Kubernetes version named, strict
  (a field the API does not know is an error, as with `kubectl apply --validate=strict`).
- ServiceMonitor and PrometheusRule: deploy/kubernetes/validate/validate-crds.mjs, run with
  node from where scripts/check-kubernetes.sh installed its npm package (the Prometheus
  Operator's validators, strict too); their metadata as kubernetes-validate's ObjectMeta.
- A rendering that holds the Deployment: the promises its objects make to each other
  (selectors, ports, the config file, the Secret, the grace period, the `job` label).

usage: validate-kubernetes.py -k 1.31.0 [-k 1.35.0] --crd-validator validate-crds.mjs FILE...
       (FILE: multi-document YAML)
"""

import argparse
import base64
import json
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

# Kinds kubernetes-validate does not know: validate-crds.mjs checks them.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
JOB = "llm-incident-manager"
PORTS = {"http": 8080, "grpc": 8081, "metrics": 9090}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"  FAIL {where}: {message}")


def object_meta_validator(version):
    """kubernetes-validate's strict ObjectMeta, resolved the way its own validate() does."""
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv.schema_contents(f"{folder}/objectmeta-meta-v1.json", version)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def error_text(error):
    path = "/".join(str(part) for part in error.absolute_path) or "(top)"
    return f"{path}: {error.message}"


def validate_crds(name, crds, validator, version):
    """The npm package's validation (one node process per file), and metadata as ObjectMeta."""
    for where, document in crds:
        errors = []
        for error in object_meta_validator(version).iter_errors(document.get("metadata", {})):
            error.path.appendleft("metadata")
            errors.append(error)
        report(where, errors, f"metadata: ObjectMeta of Kubernetes {version}, strict")
    result = subprocess.run(["node", str(validator)], input=json.dumps(crds), capture_output=True, text=True)
    print(result.stdout, end="")
    # validate-crds.mjs prints its own FAIL lines; count them here.
    found = [line for line in result.stdout.splitlines() if line.startswith("  FAIL ")]
    failures.extend(line[len("  FAIL "):] for line in found)
    if result.returncode != 0 and not found:
        fail(name, f"node {validator} failed (exit {result.returncode}; a damaged install: delete "
                   f"{validator.parent} and rerun):\n{result.stderr.strip()}")
    elif result.returncode == 0 and found:
        fail(name, f"node {validator} reported failures but exited 0")


def validate_schemas(name, documents, versions, validator):
    crds = [(where, d) for where, d in documents if (d.get("apiVersion"), d.get("kind")) in CRDS]
    if crds:
        # The CRDs do not depend on the Kubernetes version; ObjectMeta hardly does.
        validate_crds(name, crds, validator, versions[0])
    for version in versions:
        for where, document in documents:
            if (document.get("apiVersion"), document.get("kind")) in CRDS:
                continue
            try:
                kv.validate(document, version, strict=True)
                errors = []
            except (kv.SchemaNotFoundError, jsonschema.ValidationError) as error:
                errors = [error]
            report(where, errors, f"Kubernetes {version}, strict")


def report(where, errors, checked):
    for error in errors:
        fail(where, error_text(error) if isinstance(error, jsonschema.ValidationError) else error.message)
    if not errors:
        print(f"  ok   {where}: {checked}")


def seconds(duration):
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration or "")
    if not match:
        return None
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def subset(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def check_together(name, documents):
    """What the objects of one rendering promise each other."""
    by_kind = {}
    for _, document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        return
    print(f"  consistency of {name}")
    where = f"{name}: Deployment/incident-manager"
    deployment = next((d for d in deployments if d["metadata"]["name"] == "incident-manager"), None)
    if deployment is None:
        fail(name, "no Deployment named incident-manager")
        return
    pod = deployment["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    if not subset(deployment["spec"]["selector"].get("matchLabels", {}), labels):
        fail(where, "its selector does not select its own pods")
    container = pod["spec"]["containers"][0]
    ports = {port.get("name"): port["containerPort"] for port in container.get("ports", [])}
    if ports != PORTS:
        fail(where, f"container ports {ports}, want {PORTS}")
    probes = {probe: container.get(probe, {}).get("httpGet", {}) for probe in ("livenessProbe", "readinessProbe")}
    if (probes["livenessProbe"].get("path"), probes["readinessProbe"].get("path")) != ("/health/live", "/health/ready"):
        fail(where, "liveness must GET /health/live and readiness /health/ready")
    if any(probe.get("port") != "http" for probe in probes.values()):
        fail(where, "the probes must use the `http` port")

    for service in by_kind.get("Service", []):
        if not subset(service["spec"].get("selector", {}), labels):
            fail(f"{name}: Service/{service['metadata']['name']}", "its selector matches no pod of the Deployment")
    for budget in by_kind.get("PodDisruptionBudget", []):
        if not subset(budget["spec"]["selector"].get("matchLabels", {}), labels):
            fail(f"{name}: PodDisruptionBudget/{budget['metadata']['name']}", "its selector matches no pod")

    for monitor in by_kind.get("ServiceMonitor", []):
        here = f"{name}: ServiceMonitor/{monitor['metadata']['name']}"
        spec = monitor["spec"]
        selected = [s for s in by_kind.get("Service", [])
                    if subset(spec["selector"].get("matchLabels", {}), s["metadata"].get("labels", {}))]
        if len(selected) != 1:
            fail(here, f"selects {len(selected)} Services, want the metrics Service only")
            continue
        service = selected[0]
        if service["metadata"]["labels"].get(spec.get("jobLabel")) != JOB:
            fail(here, f"jobLabel must name a label of the Service whose value is {JOB!r} (the rules' job)")
        names = {port.get("name") for port in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            if endpoint.get("port") not in names:
                fail(here, f"endpoint port {endpoint.get('port')!r} is not a port of Service/{service['metadata']['name']}")
            if (endpoint.get("path"), endpoint.get("interval")) != ("/metrics", "15s"):
                fail(here, "scrape /metrics every 15s")

    # The config file: mounted, listening where the ports say, and without what must not be there.
    mounted = {v["name"]: v["configMap"]["name"] for v in pod["spec"].get("volumes", []) if "configMap" in v}
    maps = {m["metadata"]["name"]: m for m in by_kind.get("ConfigMap", [])}
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    mount = next((m for m in container.get("volumeMounts", []) if config_path and config_path.startswith(m["mountPath"] + "/")), None)
    if mount is None or mount["name"] not in mounted or mounted[mount["name"]] not in maps:
        fail(where, f"--config {config_path} is not a file of a ConfigMap of this rendering")
        return
    text = maps[mounted[mount["name"]]]["data"].get(pathlib.PurePath(config_path).name)
    try:
        config = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as error:
        fail(where, f"config.toml is not TOML: {error}")
        return
    for section, port in (("http", "http"), ("grpc", "grpc"), ("metrics", "metrics")):
        if config.get(section, {}).get("addr") != f"0.0.0.0:{PORTS[port]}":
            fail(where, f"config {section}.addr must be 0.0.0.0:{PORTS[port]}")
    if "url" in config.get("database", {}):
        fail(where, "config database.url is set: the URL belongs in the Secret (LIM_DATABASE_URL)")
    if "allow_anonymous" in config.get("auth", {}):
        fail(where, "config auth.allow_anonymous is set: the API must want keys")
    drain = seconds(config.get("http", {}).get("drain_timeout", "10s"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if drain is None or grace <= pause + drain:
        fail(where, f"terminationGracePeriodSeconds {grace} must exceed preStop {pause}s + http.drain_timeout")

    # Several replicas share PostgreSQL, from the Secret.
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env.get("LIM_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
    if not ref or ref.get("optional"):
        fail(where, "LIM_DATABASE_URL must come from a Secret, not optional")
        return
    for secret in by_kind.get("Secret", []):
        if secret["metadata"]["name"] != ref["name"]:
            continue
        value = secret.get("stringData", {}).get(ref["key"])
        if value is None and ref["key"] in secret.get("data", {}):
            value = base64.b64decode(secret["data"][ref["key"]]).decode()
        if deployment["spec"].get("replicas", 1) > 1 and not re.match(r"postgres(ql)?://", value or ""):
            fail(f"{name}: Secret/{ref['name']}", f"{ref['key']} must be a postgres:// URL: {deployment['spec']['replicas']} replicas cannot share SQLite")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True, dest="versions")
    parser.add_argument("--crd-validator", required=True, type=pathlib.Path,
                        help="validate-crds.mjs, in the folder where its npm package is installed")
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    known = kv.all_versions()
    for version in args.versions:
        if version not in known:
            sys.exit(f"error: kubernetes-validate has no schemas of Kubernetes {version} (it has {', '.join(known)})")

    for file in args.files:
        print(f"{file.name}:")
        documents = []
        for document in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if document is None:
                continue
            documents.append((f"{file.name}: {document.get('kind')}/{document.get('metadata', {}).get('name')}", document))
        if not documents:
            fail(file.name, "no manifest in it")
        validate_schemas(file.name, documents, args.versions, args.crd_validator)
        check_together(file.name, documents)
    if failures:
        print(f"{len(failures)} problem(s) in the Kubernetes manifests")
        return 1
    print("the Kubernetes manifests are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
