"""deploy/monitoring: the ServiceMonitor and PrometheusRule are valid for the Prometheus Operator's
CRDs (../shared/realworld/k8s-crds), and every metric their expressions and the Grafana
dashboard's panels name is one a running hub serves at /metrics, on the port and path scraped."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from tests.deploy.test_k8s import render, strict
from tests.support import embedded
from tests.support.realworld import realworld, unavailable

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
CRDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}

# PromQL's own words: functions, aggregations, keywords; anything else outside quotes, label
# matchers, durations and by/without lists is a metric name
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max", "clamp",
    "abs", "absent", "absent_over_time", "changes", "resets", "time", "vector", "scalar", "label_replace", "label_join",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "e",
    "humanize",
}


@functools.cache
def _render() -> tuple[dict[str, Any], ...]:
    if shutil.which("kubectl") is None:
        unavailable("needs kubectl (with its built-in Kustomize) on PATH")
    result = subprocess.run(["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize deploy/monitoring failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def go_patterns(schema: Any) -> Any:
    """The CRD's schema with Go's inline `(?i)` flag (no ECMA-262 regex has it) turned into the
    case-insensitive class of each letter, so the pattern still means what the API server checks."""
    if isinstance(schema, list):
        return [go_patterns(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: go_patterns(value) for key, value in schema.items()}
    pattern = out.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        out["pattern"] = "^" + re.sub(r"[A-Za-z]", lambda m: f"[{m[0].lower()}{m[0].upper()}]", pattern[5:])
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _render() if doc["kind"] == kind]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values, legends)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", text))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", w)}


def rule_expressions() -> list[str]:
    return [str(rule["expr"]) for doc in of_kind("PrometheusRule") for group in doc["spec"]["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return document


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], str]:
    """The metric names a running hub serves at /metrics (and the answer's content type)."""
    with embedded.embedded_hub(tmp_path_factory.mktemp("hub")) as hub:
        response = hub.client.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for line in response.text.splitlines():
        declared = re.match(r"# TYPE (\S+) (\w+)", line)
        if declared:
            name, kind = declared.groups()
            names.add(name)
            if kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names, response.headers["content-type"]


def test_the_monitoring_objects_are_valid_for_the_prometheus_operators_crds() -> None:
    kinds = {doc["kind"] for doc in _render()}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    for doc in _render():
        if doc["kind"] not in CRDS:
            continue
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        crd = yaml.safe_load(realworld("k8s-crds", CRDS[doc["kind"]]).read_text())
        versions = {entry["name"]: entry for entry in crd["spec"]["versions"]}
        validator = jsonschema_rs.Draft4Validator(strict(go_patterns(versions["v1"]["schema"]["openAPIV3Schema"])))
        errors = [f"{'/'.join(str(p) for p in e.instance_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], f"{doc['kind']} {doc['metadata']['name']}: {errors}"


def test_every_rule_and_panel_names_only_metrics_the_hub_exports(exported: tuple[set[str], str]) -> None:
    names, content_type = exported
    assert content_type.startswith("text/plain")
    expressions = rule_expressions() + dashboard_expressions()
    assert len(rule_expressions()) >= 5 and len(dashboard_expressions()) >= 8
    for expr in expressions:
        used = metric_names(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= names, f"{expr!r} names {sorted(used - names)}, which the hub does not export"


def test_the_alerts_cover_parking_circuits_backlog_server_errors_and_silence() -> None:
    by_name = {rule["alert"]: str(rule["expr"]) for doc in of_kind("PrometheusRule")
               for group in doc["spec"]["groups"] for rule in group["rules"]}
    assert 'outcome="parked"' in by_name["HubDeliveriesParking"]
    assert "hub_circuit_state" in by_name["HubCircuitOpen"] and "== 2" in by_name["HubCircuitOpen"]
    assert "hub_outbox_backlog" in by_name["HubOutboxBacklog"]
    assert 'status=~"5.."' in by_name["HubIntakeServerErrors"]
    silence = by_name["HubNoDeliveriesWhileSubmissionsArrive"]
    assert "hub_submissions_total" in silence and "unless" in silence and 'outcome="delivered"' in silence


def test_the_service_monitor_scrapes_ports_and_paths_the_hub_serves(exported: tuple[set[str], str]) -> None:
    [monitor] = of_kind("ServiceMonitor")
    services = [doc for doc in render("production") if doc["kind"] == "Service"] + of_kind("Service")
    selected = [s for s in services if all(s["metadata"].get("labels", {}).get(k) == v
                                           for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    ports = {p["name"]: (s, p) for s in selected for p in s["spec"]["ports"]}
    pods = {doc["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component"): doc["spec"]["template"]
            for doc in render("production") if doc["kind"] == "Deployment"}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in ports, f"no selected Service has a port named {endpoint['port']}"
        service, port = ports[endpoint["port"]]
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        [hub] = [c for c in pods[component]["spec"]["containers"] if c["name"] == "hub"]
        assert port["targetPort"] in {p["name"] for p in hub["ports"]}, f"{component} pods have no port {port['targetPort']}"
    # the worker serves /metrics on its probe port as the api does
    worker = pods["worker"]["spec"]["containers"][0]
    assert "--metrics-port" in worker["args"] and "9100" in worker["args"]


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource() -> None:
    board = dashboard()
    assert board["uid"] == "council-hub" and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["type"] == "prometheus" and panel["targets"]
    [config_map] = [doc for doc in of_kind("ConfigMap") if doc["metadata"]["name"] == "council-hub-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["council-hub.json"]) == board
