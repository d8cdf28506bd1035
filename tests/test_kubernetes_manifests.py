"""deploy/kubernetes/: every manifest validates against the Kubernetes schemas, offline, and the
pieces fit together (names, labels, ports, probes, SEEDS, the settings they give a node).

kubernetes-validate carries the API server's OpenAPI schemas per release; strict mode refuses a
field the schema lacks (a typo is not silently ignored by the cluster). The ServiceMonitor is a
Prometheus Operator CRD that those schemas do not know, so its shape is checked by hand.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jobnode.core.settings import VARIABLES, Settings, parse_duration_s

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
# The oldest release still commonly run, and the newest the package knows.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [doc for _, doc in manifests() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("file", "doc"), [m for m in manifests() if m[1]["kind"] not in CRD_KINDS],
                         ids=lambda item: item if isinstance(item, str) else item["kind"])
def test_manifest_validates_against_the_kubernetes_schema(file: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_a_typo_is_caught_by_the_validation() -> None:
    # The check above can fail: a misspelt field of a real manifest is refused.
    broken = yaml.safe_load((DEPLOY / "poddisruptionbudget.yaml").read_text())
    broken["spec"]["maxUnavailabel"] = broken["spec"].pop("maxUnavailable")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    shipped = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    # secret.yaml is the operator's own copy of secret.example.yaml, never committed.
    assert set(listed) == shipped | {"secret.yaml"}
    assert "secret.yaml" in (DEPLOY / ".gitignore").read_text().split()


def test_the_service_monitor_has_the_operators_shape_and_finds_the_metrics_port() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    peers = one("Service", "jobnode-peers")
    assert selects(spec["selector"]["matchLabels"], peers["metadata"]["labels"])
    assert not selects(spec["selector"]["matchLabels"], one("Service", "jobnode")["metadata"]["labels"])
    port_names = {port["name"] for port in peers["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+(ms|s|m)", endpoint["interval"])


def test_the_statefulset_services_and_budget_fit_together() -> None:
    sts, peers, api = one("StatefulSet"), one("Service", "jobnode-peers"), one("Service", "jobnode")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["serviceName"] == "jobnode-peers"
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"] is True
    for selector in (peers["spec"]["selector"], api["spec"]["selector"], sts["spec"]["selector"]["matchLabels"],
                     one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert selects(selector, pod_labels)
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert {port["targetPort"] for port in peers["spec"]["ports"] + api["spec"]["ports"]} <= set(ports)
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    sources = {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]}
    assert sources == {one("ConfigMap")["metadata"]["name"], one("Secret")["metadata"]["name"]}
    config = one("ConfigMap")["data"]
    assert int(config["METRICS_PORT"]) == ports["metrics"]
    grace_s = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert parse_duration_s(config["SHUTDOWN_GRACE"]) < grace_s


def node_environment(pod_index: int) -> dict[str, str]:
    """What a pod's process sees: the ConfigMap, the Secret (with real random values), the env."""
    sts = one("StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = dict(one("ConfigMap")["data"])
    env |= {key: secrets.token_hex(32) for key in one("Secret")["stringData"]}
    env["MONGODB_URI"] = "mongodb://db-0.db,db-1.db/?replicaSet=rs0"
    fields = {"metadata.name": f"{sts['metadata']['name']}-{pod_index}", "metadata.namespace": "jobs"}
    for item in container["env"]:
        value = item.get("value") or fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
    return env


def test_every_variable_the_manifests_set_is_one_jobnode_reads() -> None:
    env = node_environment(0)
    known = {variable.name for variable in VARIABLES} | {"SEEDS", "POD_NAME", "POD_NAMESPACE"}
    assert set(env) <= known, set(env) - known


def test_the_manifests_give_each_pod_valid_settings_and_seeds_naming_the_pods() -> None:
    sts = one("StatefulSet")
    for index in range(sts["spec"]["replicas"]):
        env = node_environment(index)
        settings = Settings.from_env(env, env_file=None)
        assert settings.node_id == f"jobnode-{index}"
        assert settings.advertise_url == f"http://jobnode-{index}.jobnode-peers.jobs.svc.cluster.local:8080"
        assert settings.redis_sentinels and settings.redis_sentinel_master == "jobs"
        assert settings.data_dir == Path("/data")
    seeds = node_environment(0)["SEEDS"].split(",")
    assert seeds == [f"http://jobnode-{i}.jobnode-peers:8080" for i in range(sts["spec"]["replicas"])]


def test_the_example_secret_is_refused_until_its_placeholders_are_replaced() -> None:
    env = node_environment(0) | dict(one("Secret")["stringData"])
    with pytest.raises(Exception, match="CLUSTER_SECRET|JWT_SECRET|ADMIN_PASSWORD"):
        Settings.from_env(env, env_file=None)
