"""Which hosts each configured connector calls, checked against the allowed hosts of every tenant
it serves: at start-up (`Runtime.build`) and by `hub config check`, naming the file and line.

Hosts are read from the options named like an endpoint (url, endpoint, wsdl, host, `*_url`),
so a plug-in connector's endpoint is checked too; a broker URL kept in the environment
(`url_env`) is read from there. At request time the connectors check again, after DNS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.config.files import ConnectorConfig, HubConfig, Tenant
from hub.errors import OutboundRefused
from hub.outbound.guard import AllowList, allow_list_for, blocked_host, network_hosts, pattern_problems

# option names that hold an address the connector calls
_URL_KEYS = frozenset({"url", "endpoint", "wsdl", "check_url", "base_url", "status_url", "poll_url"})
_HOST_KEYS = frozenset({"host", "hostname", "server"})


@dataclass(frozen=True)
class Refusal:
    """One problem, with the connector it stops (None for a tenant's own list)."""

    connector: str | None
    message: str


@dataclass(frozen=True)
class Endpoint:
    option: str
    host: str
    port: int | None


def endpoints(connector: ConnectorConfig, environ: Mapping[str, str]) -> list[Endpoint]:
    """The hosts a connector's options name. A WSDL or anything else given as a file has none."""
    found: list[Endpoint] = []
    options = connector.options
    for key, value in options.items():
        if not isinstance(value, str) or not value:
            continue
        if (key in _URL_KEYS or key.endswith(("_url", "_endpoint"))) and "://" in value:
            found.extend(Endpoint(key, host, port) for host, port in network_hosts(value))
        elif key in _HOST_KEYS:
            found.append(Endpoint(key, value, _port(options.get("port"))))
        elif (key == "url_env" or key.endswith("_url_env")) and environ.get(value):
            found.extend(Endpoint(f"${value}", host, port) for host, port in network_hosts(environ[value]))
    return found


def _port(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def tenants_served(config: HubConfig, connector: ConnectorConfig) -> list[Tenant]:
    if "*" in connector.tenants:
        return [config.tenants[t] for t in sorted(config.tenants)]
    return [config.tenants[t] for t in connector.tenants if t in config.tenants]


def connector_allow_list(config: HubConfig, connector: ConnectorConfig) -> AllowList:
    """What the connector may call: only hosts every tenant it serves allows."""
    return allow_list_for(AllowList(t.allowed_hosts, owner=f"tenant {t.id}") for t in tenants_served(config, connector))


def outbound_problems(config: HubConfig, environ: Mapping[str, str], config_dir: Path | None) -> list[Refusal]:
    """Every connector host that is blocked or that a tenant it serves does not allow, and
    every allowed_hosts entry that is not a pattern, each with its file:line."""
    where = _locations(config_dir)
    problems: list[Refusal] = []
    for tenant in config.tenants.values():
        at = where.get(("tenants", tenant.id), "tenants")
        problems.extend(Refusal(None, f"{at}: tenant {tenant.id}: allowed_hosts entry {p}") for p in pattern_problems(tenant.allowed_hosts))
    for name, connector in sorted(config.connectors.items()):
        at = where.get(("connectors", name), "connectors")
        try:
            found = endpoints(connector, environ)
        except OutboundRefused as exc:
            problems.append(Refusal(name, f"{at}: connector {name}: {exc.reason}"))
            continue
        served = tenants_served(config, connector)
        for endpoint in found:
            problems.extend(Refusal(name, f"{at}: connector {name}: {reason}") for reason in _refusals(endpoint, served))
    return problems


def _refusals(endpoint: Endpoint, served: list[Tenant]) -> list[str]:
    source = "" if endpoint.option in ("url", "endpoint", "host") else f" (from {endpoint.option})"
    shown = f"host {endpoint.host}{source}"
    try:
        if blocked_host(endpoint.host):
            return [f"{shown} is a link-local or cloud metadata address, which the hub never calls"]
    except OutboundRefused as exc:
        return [exc.reason]
    if not served:
        return [f"{shown} is not allowed: the connector serves no configured tenant"]
    return [
        f"{shown} is not on tenant {tenant.id}'s allowed_hosts"
        for tenant in served
        if not AllowList(tenant.allowed_hosts).allows(endpoint.host, endpoint.port)
    ]


def _locations(config_dir: Path | None) -> dict[tuple[str, str], str]:
    """file:line of each connector and tenant entry, read as `load_config` reads the files."""
    found: dict[tuple[str, str], str] = {}
    if config_dir is None or not config_dir.is_dir():
        return found
    for path in sorted(config_dir.glob("*.yaml")) + sorted(config_dir.glob("*.yml")):
        try:
            document = yaml.compose(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue  # load_config has already reported it
        if not isinstance(document, yaml.MappingNode):
            continue
        for key, section in document.value:
            if key.value not in ("connectors", "tenants") or not isinstance(section, yaml.SequenceNode):
                continue
            field = "name" if key.value == "connectors" else "id"
            for item in section.value:
                if isinstance(item, yaml.MappingNode):
                    for item_key, item_value in item.value:
                        if item_key.value == field and isinstance(item_value, yaml.ScalarNode):
                            found.setdefault((key.value, str(item_value.value)), f"{path}:{item.start_mark.line + 1}")
    return found
