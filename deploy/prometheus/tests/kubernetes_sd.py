#!/usr/bin/env python3
"""Checks deploy/prometheus/kubernetes-sd.yml with a real Prometheus, without a cluster.

Debian's prometheus and promtool are built without Kubernetes discovery (`promtool check
config` refuses `kubernetes_sd_configs`), so this script:
1. checks the `kubernetes_sd_configs` entries' keys and role by hand;
2. writes a copy of the configuration whose Kubernetes discovery is replaced by file
   discovery of targets labelled as Kubernetes' `endpoints` role labels them, and whose job
   is renamed (to prove the `job` relabelling), and runs `promtool check config` on it;
3. starts Prometheus on it and asks its targets API which targets the relabelling keeps
   and with which labels: the `metrics` port of the llm-incident-manager Service only, with
   job, namespace, pod and service labels.

Usage: kubernetes_sd.py [CONFIG] (default: kubernetes-sd.yml beside this directory).
Needs PyYAML (the test command's virtual environment), prometheus and promtool (Debian).
"""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("error: PyYAML is missing: pip install PyYAML")

ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
SD_KEYS = {
    "api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
    # HTTP client settings every discovery accepts
    "basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file",
    "tls_config", "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
    "follow_redirects", "enable_http2",
}
NAMESPACE_KEYS = {"names", "own_namespace"}

# Targets as the `endpoints` role discovers them: two pods behind our Service (its metrics
# port, and http and grpc ports to be left out) and another application's metrics port.
def endpoint(ip, pod, service, app, port_name, port):
    return {
        "targets": [f"{ip}:{port}"],
        "labels": {
            "__meta_kubernetes_namespace": "lim",
            "__meta_kubernetes_service_name": service,
            "__meta_kubernetes_service_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_endpoint_port_name": port_name,
            "__meta_kubernetes_endpoint_ready": "true",
            "__meta_kubernetes_pod_name": pod,
        },
    }

DISCOVERED = [
    endpoint(ip, pod, "incident-manager-metrics", "llm-incident-manager", name, port)
    for ip, pod in (("10.0.1.23", "llm-incident-manager-7d9f-a"), ("10.0.1.24", "llm-incident-manager-7d9f-b"))
    for name, port in (("metrics", 9090), ("http", 8080), ("grpc", 8081))
] + [endpoint("10.0.2.5", "other-app-1", "other-app", "other-app", "metrics", 9090)]

EXPECTED = sorted(
    [
        {"instance": f"{ip}:9090", "job": "llm-incident-manager", "namespace": "lim",
         "pod": pod, "service": "incident-manager-metrics"}
        for ip, pod in (("10.0.1.23", "llm-incident-manager-7d9f-a"), ("10.0.1.24", "llm-incident-manager-7d9f-b"))
    ],
    key=lambda labels: labels["instance"],
)


def fail(message):
    sys.exit(f"FAILED: {message}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    config_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "kubernetes-sd.yml"
    config = yaml.safe_load(config_path.read_text())

    jobs = [job for job in config.get("scrape_configs", []) if "kubernetes_sd_configs" in job]
    if not jobs:
        fail(f"{config_path}: no scrape job uses kubernetes_sd_configs")
    for job in jobs:
        for sd in job["kubernetes_sd_configs"]:
            unknown = set(sd) - SD_KEYS
            if unknown:
                fail(f"{job['job_name']}: unknown kubernetes_sd_configs keys {sorted(unknown)}")
            if sd.get("role") not in ROLES:
                fail(f"{job['job_name']}: role {sd.get('role')!r} is not one of {sorted(ROLES)}")
            unknown = set(sd.get("namespaces") or {}) - NAMESPACE_KEYS
            if unknown:
                fail(f"{job['job_name']}: unknown namespaces keys {sorted(unknown)}")
    if len(jobs) != 1:
        fail("expected one Kubernetes scrape job")
    print(f"kubernetes_sd_configs: keys and role ({jobs[0]['kubernetes_sd_configs'][0]['role']}) valid")

    with tempfile.TemporaryDirectory(prefix="lim-k8s-sd.") as tmp:
        tmp = Path(tmp)
        (tmp / "targets.json").write_text(json.dumps(DISCOVERED))
        job = jobs[0]
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(tmp / "targets.json")]}]
        job["job_name"] = "renamed-by-the-operator"
        config.pop("alerting", None)  # no Alertmanager to reach here
        copy = tmp / "prometheus.yml"
        copy.write_text(yaml.safe_dump(config, sort_keys=False))
        if (config_path.parent / "rules").is_dir():
            shutil.copytree(config_path.parent / "rules", tmp / "rules")

        subprocess.run(["promtool", "check", "config", str(copy)], check=True)

        port = free_port()
        log = open(tmp / "prometheus.log", "w")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={copy}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if prometheus.poll() is not None:
                    fail("prometheus exited:\n" + (tmp / "prometheus.log").read_text())
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets?state=any", timeout=2) as answer:
                        data = json.load(answer)["data"]
                    if len(data["activeTargets"]) + len(data["droppedTargets"]) >= len(DISCOVERED):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    fail("Prometheus did not discover the targets within 60 s:\n" + (tmp / "prometheus.log").read_text())
                time.sleep(0.2)
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()
            log.close()

    kept = sorted((target["labels"] for target in data["activeTargets"]), key=lambda labels: labels["instance"])
    if kept != EXPECTED:
        fail(f"relabelling kept {json.dumps(kept, indent=1)}\nexpected {json.dumps(EXPECTED, indent=1)}")
    print(f"relabelling: {len(kept)} metrics ports of llm-incident-manager kept with job, namespace, pod, "
          f"service labels; {len(data['droppedTargets'])} other ports and services dropped")


if __name__ == "__main__":
    main()
