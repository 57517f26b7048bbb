"""The Kubernetes manifests (deploy/k8s): each overlay renders with `kubectl kustomize`, every object
is valid for Kubernetes 1.30 or for its operator's CRD, and what an operator relies on holds."""

from __future__ import annotations

import copy
import functools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from hub.config import production
from hub.config.files import load_config
from hub.config.settings import ENV_PREFIX, Settings
from hub.relay.transport import DELAY_TIERS_MS, RabbitTransport
from tests.support.realworld import realworld, unavailable

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "production"]
KUBERNETES_VERSION = "1.30"
NAMESPACE = "council-hub"
HUB = {"app.kubernetes.io/name": "council-hub"}

# each custom resource's CRD, beside the project (../shared/realworld/k8s-crds)
CRDS = {
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("rabbitmq.com", "RabbitmqCluster"): "rabbitmq.com_rabbitmqclusters.yaml",
    ("postgresql.cnpg.io", "Cluster"): "postgresql.cnpg.io_clusters.yaml",
}
# custom resources whose CRD the material lacks: checked field by field below instead
WITHOUT_CRD = {("postgresql.cnpg.io", "ScheduledBackup")}

API_RESOURCES = {"cpu": ("500m", "2"), "memory": ("256Mi", "512Mi")}
WORKER_RESOURCES = {"cpu": ("500m", "1"), "memory": ("256Mi", "512Mi")}


# ---- rendering and validation

@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        unavailable("needs kubectl (with its built-in Kustomize) on PATH")
    return copy.deepcopy(list(_render(overlay)))


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def docs(overlay: str) -> list[dict[str, Any]]:
    return render(overlay)


def group_of(doc: dict[str, Any]) -> str:
    api_version = str(doc["apiVersion"])
    return api_version.split("/")[0] if "/" in api_version else ""


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema that refuses unknown fields, as the API server's strict
    field validation does: x-kubernetes-* keys dropped, objects closed unless they preserve unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if "properties" in schema:
        # property names are data, not schema keywords: keep x-kubernetes-looking names, if any
        out["properties"] = {name: strict(value) for name, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(group: str, kind: str, version: str) -> Any:
    crd = yaml.safe_load(realworld("k8s-crds", CRDS[(group, kind)]).read_text())
    versions = {entry["name"]: entry for entry in crd["spec"]["versions"]}
    assert version in versions, f"{kind}: the CRD serves {sorted(versions)}, not {version}"
    return jsonschema_rs.Draft4Validator(strict(versions[version]["schema"]["openAPIV3Schema"]))


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = crd_validator(group_of(doc), doc["kind"], str(doc["apiVersion"]).split("/")[1])
    return [f"{'/'.join(str(p) for p in error.instance_path)}: {error.message}" for error in validator.iter_errors(doc)]


# ---- what the rendered objects hold

def pod_owners(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (doc for doc in docs if doc["kind"] in ("Deployment", "Job"))


def hub_pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each hub pod template by its component (api, worker, migrate)."""
    pods = {}
    for doc in pod_owners(docs):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") == "council-hub":
            pods[labels["app.kubernetes.io/component"]] = doc["spec"]["template"]
    return pods


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (hub,) = [c for c in pod["spec"]["containers"] if c["name"] == "hub"]
    return hub


def pod_labels(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The labels of every pod the render makes, its own and those the operators make: the RabbitMQ
    Cluster Operator labels a cluster's pods app.kubernetes.io/name: <cluster> (internal/metadata/label.go),
    CloudNativePG cnpg.io/cluster: <cluster> and cnpg.io/podRole: instance (pkg/utils/labels_annotations.go)."""
    labels = [dict(doc["spec"]["template"]["metadata"]["labels"]) for doc in pod_owners(docs)]
    labels += [{"app.kubernetes.io/name": doc["metadata"]["name"], "app.kubernetes.io/component": "rabbitmq"}
               for doc in of_kind(docs, "RabbitmqCluster")]
    labels += [{"cnpg.io/cluster": doc["metadata"]["name"], "cnpg.io/podRole": "instance"} for doc in of_kind(docs, "Cluster")]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not matched:
            return False
    return True


def selects_any_pod(selector: dict[str, Any], docs: list[dict[str, Any]]) -> bool:
    return any(selects(selector, labels) for labels in pod_labels(docs))


def settings_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    (settings,) = [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"].startswith("council-hub-settings")]
    return dict(settings["data"])


SETTING_NAMES = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


# ---- every object is valid

def test_every_object_is_in_the_hub_namespace(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} {doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "council-hub"


def test_every_core_object_is_valid_for_kubernetes(docs: list[dict[str, Any]]) -> None:
    core = [doc for doc in docs if (group_of(doc), doc["kind"]) not in CRDS and (group_of(doc), doc["kind"]) not in WITHOUT_CRD]
    assert {"Deployment", "Job", "Service", "Ingress", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget"} <= {d["kind"] for d in core}
    for doc in core:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{doc['apiVersion']} {doc['kind']} is neither a Kubernetes {KUBERNETES_VERSION} kind nor a known custom resource")
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {'/'.join(str(p) for p in exc.path)}")


def test_every_custom_resource_is_valid_for_its_crd(docs: list[dict[str, Any]]) -> None:
    custom = [doc for doc in docs if (group_of(doc), doc["kind"]) in CRDS]
    assert {doc["kind"] for doc in custom} == {"ScaledObject", "TriggerAuthentication", "RabbitmqCluster", "Cluster"}
    for doc in custom:
        assert crd_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"


def test_crd_validation_refuses_a_misspelt_field() -> None:
    cluster = one(render("production"), "Cluster", "council-hub-db")
    cluster["spec"]["bootstrap"]["initdb"]["ownr"] = "hub"
    cluster["spec"]["instances"] = "three"
    errors = crd_errors(cluster)
    assert any("ownr" in error for error in errors) and any("instances" in error for error in errors), errors


def test_the_scheduled_backup_names_the_cluster_and_a_six_field_schedule() -> None:
    # CloudNativePG's ScheduledBackup CRD is not in the material: its few fields are checked here
    docs = render("production")
    (backup,) = of_kind(docs, "ScheduledBackup")
    assert set(backup["spec"]) <= {"schedule", "cluster", "backupOwnerReference", "immediate", "method", "suspend", "target"}
    assert backup["spec"]["cluster"]["name"] in {doc["metadata"]["name"] for doc in of_kind(docs, "Cluster")}
    assert len(backup["spec"]["schedule"].split()) == 6
    assert backup["spec"]["method"] == "barmanObjectStore"


# ---- the hub's pods

def test_every_hub_container_runs_locked_down_with_requests_and_limits(docs: list[dict[str, Any]]) -> None:
    pods = hub_pods(docs)
    assert set(pods) == {"api", "worker", "migrate"}
    for component, pod in pods.items():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # a Service link variable named HUB_... would be refused by the hub as an unknown setting
        assert spec["enableServiceLinks"] is False, component
        for each in spec["containers"] + spec.get("initContainers", []):
            context = each["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001 and context["runAsGroup"] == 10001, component
            assert context["readOnlyRootFilesystem"] is True, component
            assert context["allowPrivilegeEscalation"] is False, component
            assert context["capabilities"]["drop"] == ["ALL"], component
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, component
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(each["resources"][kind]), f"{component} {kind}"
            mounts = {mount["mountPath"]: mount["name"] for mount in each["volumeMounts"]}
            volumes = {volume["name"]: volume for volume in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], component


def test_the_api_and_worker_are_sized_from_the_benchmark(docs: list[dict[str, Any]]) -> None:
    pods = hub_pods(docs)
    for component, sizes in (("api", API_RESOURCES), ("worker", WORKER_RESOURCES)):
        resources = container(pods[component])["resources"]
        for name, (request, limit) in sizes.items():
            assert (resources["requests"][name], resources["limits"][name]) == (request, limit), f"{component} {name}"


def test_the_api_is_ready_when_it_can_store_and_alive_while_it_answers(docs: list[dict[str, Any]]) -> None:
    api = container(hub_pods(docs)["api"])
    assert api["args"] == ["api", "--host", "0.0.0.0", "--port", "8000"]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(docs, "Service", "council-hub-api")
    assert service["spec"]["ports"][0]["port"] == 80 and service["spec"]["ports"][0]["targetPort"] == "http"
    assert selects({"matchLabels": service["spec"]["selector"]}, hub_pods(docs)["api"]["metadata"]["labels"])


def test_a_stopping_worker_has_longer_than_its_grace_to_finish(docs: list[dict[str, Any]]) -> None:
    pod = hub_pods(docs)["worker"]
    worker = container(pod)
    args = worker["args"]
    assert args[0] == "worker"
    grace = float(args[args.index("--grace") + 1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in worker["ports"]
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_the_migrate_job_runs_hub_migrate_once_and_is_applied_before_the_rollout(docs: list[dict[str, Any]]) -> None:
    (job,) = of_kind(docs, "Job")
    assert container(job["spec"]["template"])["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # docs/kubernetes.md: the first step applies everything but the api and the workers
    first = [doc for doc in docs if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in ("api", "worker")]
    assert job in first
    assert not [doc for doc in first if doc["kind"] in ("Deployment", "HorizontalPodAutoscaler", "ScaledObject")]
    assert [doc for doc in first if doc["kind"] == "ConfigMap"]


def test_the_image_is_the_overlays(overlay: str, docs: list[dict[str, Any]]) -> None:
    images = {container(pod)["image"] for pod in hub_pods(docs).values()}
    if overlay == "dev":
        assert images == {"council-hub:dev"}
    else:
        (image,) = images
        name, _, tag = image.rpartition(":")
        assert name == "registry.example.council/council-hub" and tag and tag != "latest"


# ---- settings and secrets

def test_every_hub_variable_is_a_setting_of_the_hub(docs: list[dict[str, Any]]) -> None:
    names = set(settings_data(docs))
    for doc in of_kind(docs, "Secret"):
        names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    for pod in hub_pods(docs).values():
        names |= {env["name"] for env in container(pod).get("env", [])}
    hub_names = {name for name in names if name.upper().startswith(ENV_PREFIX)}
    assert hub_names, "no HUB_ variable found"
    assert hub_names <= SETTING_NAMES, f"not settings of the hub: {sorted(hub_names - SETTING_NAMES)}"


def test_no_service_injects_a_hub_variable(docs: list[dict[str, Any]]) -> None:
    # <SERVICE>_PORT variables; the operators make Services named after their clusters
    services = [doc["metadata"]["name"] for doc in of_kind(docs, "Service")]
    services += [doc["metadata"]["name"] for doc in of_kind(docs, "RabbitmqCluster")]
    services += [doc["metadata"]["name"] + suffix for doc in of_kind(docs, "Cluster") for suffix in ("-rw", "-ro", "-r")]
    assert not [name for name in services if name.upper().replace("-", "_").startswith(ENV_PREFIX)]


def test_production_is_production_and_its_secret_comes_from_the_operator() -> None:
    docs = render("production")
    assert settings_data(docs)["HUB_ENVIRONMENT"] == "production"
    assert [doc for doc in of_kind(docs, "Secret") if doc.get("data") or doc.get("stringData")] == []
    for pod in hub_pods(docs).values():
        assert {"secretRef": {"name": "council-hub-secrets"}} in container(pod)["envFrom"]


def test_development_is_development() -> None:
    assert settings_data(render("dev"))["HUB_ENVIRONMENT"] == "development"


def documented_secret_keys() -> set[str]:
    """The keys of `kubectl create secret generic council-hub-secrets` in docs/kubernetes.md."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    command = re.search(r"kubectl -n council-hub create secret generic council-hub-secrets.*?\n(?!\s)", text, re.S)
    assert command, "docs/kubernetes.md gives no `kubectl create secret generic council-hub-secrets`"
    words = shlex.split(command.group(0).replace("\\\n", " "))
    return {word.split("=", 1)[1].split("=", 1)[0] for word in words if word.startswith("--from-literal=")}


def test_production_starts_with_its_settings_and_the_documented_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = documented_secret_keys()
    assert {"HUB_DATABASE_URL", "HUB_BROKER_URL", "HUB_ENCRYPTION_KEYS", "HUB_INDEX_KEY", "HUB_SESSION_KEY", "HUB_OIDC_CLIENT_SECRET"} <= keys
    assert {key for key in keys if key.startswith(ENV_PREFIX)} <= SETTING_NAMES
    values = {"HUB_DATABASE_URL": "postgresql+psycopg://hub:pw@council-hub-db-rw.council-hub.svc:5432/hub",
              "HUB_BROKER_URL": "amqp://hub:pw@council-hub-broker.council-hub.svc:5672//",
              "HUB_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    for name in [name for name in os.environ if name.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in {**settings_data(render("production")), **{key: "s" * 40 for key in keys}, **values}.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert production.problems(settings) == []


# ---- scaling

def test_the_hpa_scales_the_api_on_cpu() -> None:
    docs = render("production")
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and one(docs, "Deployment", target["name"])["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_keda_scales_the_workers_on_the_connectors_queues(docs: list[dict[str, Any]]) -> None:
    (scaled,) = of_kind(docs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert one(docs, "Deployment", target["name"])["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 10 if docs_overlay(docs) == "production" else 2)
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "rabbitmq" and meta["mode"] == "QueueLength" and int(meta["value"]) > 0
    # a regex over queue names is read from the management API only
    assert meta["useRegex"] == "true" and meta["protocol"] == "http" and meta["operation"] == "sum"
    assert meta["host"].startswith("http://") and ":15672/" in meta["host"]
    (broker,) = of_kind(docs, "RabbitmqCluster")
    assert meta["host"].startswith(f"http://{broker['metadata']['name']}.{NAMESPACE}.svc:")

    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {(ref["parameter"], ref["name"]) for ref in auth["spec"]["secretTargetRef"]} == {
        ("username", f"{broker['metadata']['name']}-default-user"), ("password", f"{broker['metadata']['name']}-default-user")}


def docs_overlay(docs: list[dict[str, Any]]) -> str:
    return "production" if of_kind(docs, "ScheduledBackup") else "dev"


def test_the_queue_regex_counts_deliveries_waiting_and_not_retries_waiting_out_their_backoff() -> None:
    (scaled,) = of_kind(render("production"), "ScaledObject")
    # RabbitMQ matches the regex unanchored, as re.search does
    pattern = re.compile(scaled["spec"]["triggers"][0]["metadata"]["queueName"])
    settings = Settings(broker_url="amqp://hub@broker//")
    topology = RabbitTransport(settings)
    connectors = list(load_config(settings.config_dir, {}).connectors)
    assert connectors
    for name in connectors:
        assert pattern.search(topology.queue(name).name), name
        assert pattern.search(topology.dead_queue(name).name), name
        for tier in (DELAY_TIERS_MS[0], DELAY_TIERS_MS[-1]):
            assert not pattern.search(topology.delay_queue(name, tier).name), name
    assert not pattern.search("other.crm")


# ---- broker, database, availability

def test_production_runs_three_broker_nodes_and_three_database_instances_with_backups() -> None:
    docs = render("production")
    (broker,) = of_kind(docs, "RabbitmqCluster")
    (database,) = of_kind(docs, "Cluster")
    assert broker["spec"]["replicas"] == 3 and broker["spec"]["image"].startswith("rabbitmq:4.1-management")
    assert database["spec"]["instances"] == 3 and database["spec"]["imageName"].startswith("ghcr.io/cloudnative-pg/postgresql:16")
    assert database["spec"]["bootstrap"]["initdb"] == {"database": "hub", "owner": "hub"}
    store = database["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    assert {store["s3Credentials"][key]["name"] for key in ("accessKeyId", "secretAccessKey")} == {"council-hub-backup-credentials"}
    assert of_kind(docs, "Secret") == []


def test_every_deployment_has_a_disruption_budget(docs: list[dict[str, Any]]) -> None:
    budgets = of_kind(docs, "PodDisruptionBudget")
    for doc in of_kind(docs, "Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert [pdb for pdb in budgets if selects(pdb["spec"]["selector"], labels)], doc["metadata"]["name"]
    for pdb in budgets:
        assert selects_any_pod(pdb["spec"]["selector"], docs), pdb["metadata"]["name"]


# ---- network policies

def peers(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rule in policy["spec"].get("ingress", []):
        yield from rule.get("from", [])
    for rule in policy["spec"].get("egress", []):
        yield from rule.get("to", [])


def test_the_namespace_denies_by_default(docs: list[dict[str, Any]]) -> None:
    deny = one(docs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_every_network_policy_selects_pods_that_exist(docs: list[dict[str, Any]]) -> None:
    for policy in of_kind(docs, "NetworkPolicy"):
        name = policy["metadata"]["name"]
        selector = policy["spec"]["podSelector"]
        assert selector == {} or selects_any_pod(selector, docs), f"{name}: its podSelector matches no pod"
        for peer in peers(policy):
            if "namespaceSelector" in peer:
                # another namespace: named by the label Kubernetes gives every namespace
                assert set(peer["namespaceSelector"]["matchLabels"]) == {"kubernetes.io/metadata.name"}, name
            elif "podSelector" in peer:
                assert selects_any_pod(peer["podSelector"], docs), f"{name}: a peer matches no pod: {peer}"


def allowed(docs: list[dict[str, Any]], direction: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The rules of every policy that selects these pods, in one direction."""
    return [rule for policy in of_kind(docs, "NetworkPolicy") if selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get(direction, [])]


def ports(rule: dict[str, Any]) -> set[int]:
    return {port["port"] for port in rule.get("ports", [])}


def test_only_the_ingress_controller_reaches_the_api(docs: list[dict[str, Any]]) -> None:
    api = hub_pods(docs)["api"]["metadata"]["labels"]
    rules = allowed(docs, "ingress", api)
    assert rules == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                      "ports": [{"protocol": "TCP", "port": 8000}]}]


def test_only_hub_pods_reach_the_broker_and_the_database(docs: list[dict[str, Any]]) -> None:
    (broker,) = [labels for labels in pod_labels(docs) if labels.get("app.kubernetes.io/component") == "rabbitmq"]
    (database,) = [labels for labels in pod_labels(docs) if "cnpg.io/cluster" in labels]
    pods = hub_pods(docs)
    for target, port, clients in ((broker, 5672, {"api", "worker"}), (database, 5432, {"api", "worker", "migrate"})):
        reaching = set()
        for rule in allowed(docs, "ingress", target):
            if port in ports(rule):
                for peer in rule["from"]:
                    assert "namespaceSelector" not in peer, f"another namespace reaches {port}"
                    reaching |= {component for component, pod in pods.items() if selects(peer["podSelector"], pod["metadata"]["labels"])}
        assert reaching == clients, port
        # and each of those may send to it
        for component in clients:
            assert [rule for rule in allowed(docs, "egress", pods[component]["metadata"]["labels"])
                    if port in ports(rule) and any("podSelector" in peer and selects(peer["podSelector"], target) for peer in rule["to"])], component
    management = [rule for rule in allowed(docs, "ingress", broker) if 15672 in ports(rule)]
    assert {"keda"} <= {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for rule in management for peer in rule["from"]}


def test_every_pod_may_resolve_names(docs: list[dict[str, Any]]) -> None:
    for labels in pod_labels(docs):
        dns = [rule for rule in allowed(docs, "egress", labels) if 53 in ports(rule)]
        assert dns and all({p["protocol"] for p in rule["ports"]} == {"UDP", "TCP"} for rule in dns), labels


def test_workers_reach_only_the_back_offices_broker_database_and_dns(docs: list[dict[str, Any]]) -> None:
    worker = hub_pods(docs)["worker"]["metadata"]["labels"]
    for rule in allowed(docs, "egress", worker):
        for peer in rule["to"]:
            assert "ipBlock" in peer or "podSelector" in peer or "namespaceSelector" in peer
            if "ipBlock" in peer:
                assert peer["ipBlock"]["cidr"] != "0.0.0.0/0"


def test_the_restore_and_backup_yaml_in_the_docs_is_valid() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    (restore,) = [doc for doc in blocks if doc["kind"] == "Cluster"]
    assert crd_errors(restore) == []
    recovery = restore["spec"]["bootstrap"]["recovery"]
    (source,) = [cluster for cluster in restore["spec"]["externalClusters"] if cluster["name"] == recovery["source"]]
    production_store = one(render("production"), "Cluster", "council-hub-db")["spec"]["backup"]["barmanObjectStore"]
    # it reads the archive production writes, under the old cluster's name
    assert source["barmanObjectStore"]["destinationPath"] == production_store["destinationPath"]
    assert source["barmanObjectStore"]["serverName"] == "council-hub-db"
    assert [doc["kind"] for doc in blocks if doc["kind"] != "Cluster"] == ["Backup"]
