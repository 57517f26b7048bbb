"""The hub's configuration files: tenants, front-end clients, connectors and routes.

Every `*.yaml` in the configuration directory may hold any of the four sections; they are
merged, validated with pydantic, and every problem is reported with its file and line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jmespath
import limits
import yaml
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.config.bundled import is_standards_uri, standards_path
from hub.errors import ConfigError

SECTIONS = ("tenants", "clients", "connectors", "routes", "staff", "retention", "savings")
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_LINE = "__line__"


def _rate(value: str | None) -> str | None:
    """A rate limit in the `limits` notation, refused at load time when it does not parse."""
    if value is not None:
        try:
            limits.parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit; write e.g. '100/second' or '50/second;2000/minute'") from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantAlerts(_Model):
    """Who hears by e-mail that this tenant's deliveries park or a connector's circuit opened, and
    gets the daily digest (docs/alerts.md). The mail goes through `mail_connector`, an `email`
    connector: its mail server, login and From address; no second mail configuration."""

    to: tuple[str, ...] = Field(min_length=1)
    mail_connector: str = Field(pattern=_NAME)
    digest: bool = True

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class Tenant(_Model):
    id: str = Field(pattern=_NAME)
    name: str
    reference_prefix: str = Field(default="HUB", pattern=r"^[A-Z]{2,6}$")
    # the forms this tenant's front ends may submit ("*": every form the hub has)
    forms: tuple[str, ...] = ("*",)
    # hosts this tenant's connectors may call: "host", "host:port" or "*.example.org"
    allowed_hosts: tuple[str, ...] = ()
    # requests all of this tenant's clients may make, `limits` notation ("300/second"); None: HUB_TENANT_RATE_LIMIT
    rate_limit: str | None = None
    # authenticated client requests a day (UTC) for the whole tenant; None: no quota
    daily_quota: int | None = Field(default=None, gt=0)
    # e-mail alerts and the daily digest; None: none are sent
    alerts: TenantAlerts | None = None

    _rate_limit = field_validator("rate_limit")(classmethod(lambda cls, value: _rate(value)))

    def offers(self, form_id: str) -> bool:
        return "*" in self.forms or form_id in self.forms


class Client(_Model):
    """A front end that posts submissions. Only hashes of its API keys are kept."""

    id: str = Field(pattern=_NAME)
    tenant: str
    name: str = ""
    api_key_sha256: tuple[str, ...] = ()
    # development only: the key itself is given in this environment variable at start-up
    api_key_env: str | None = None
    forms: tuple[str, ...] = ("*",)
    # requests this client may make, `limits` notation ("100/second"); None: HUB_CLIENT_RATE_LIMIT
    rate_limit: str | None = None

    _rate_limit = field_validator("rate_limit")(classmethod(lambda cls, value: _rate(value)))

    @field_validator("api_key_sha256")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError("each api_key_sha256 must be 64 lower-case hex digits")
        return value

    def may_submit(self, form_id: str) -> bool:
        return "*" in self.forms or form_id in self.forms


class RetryPolicy(_Model):
    max_attempts: int = Field(default=5, ge=1, le=100)
    base_seconds: float = Field(default=2.0, gt=0)
    cap_seconds: float = Field(default=600.0, gt=0)


class CircuitPolicy(_Model):
    """After `failure_threshold` transient failures in a row the connector's circuit opens: its
    deliveries wait `open_seconds` (not counted as attempts), then one probe decides."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    open_seconds: float = Field(default=30.0, gt=0, le=86400)


class StatusUpdates(_Model):
    """How the back office tells the hub what became of a record: it pushes to
    `POST /v1/status-updates/{connector}`, signed with the secret in `secret_env`, and/or the hub
    polls it every `poll_seconds`."""

    secret_env: str | None = None
    poll_seconds: float | None = Field(default=None, gt=0)


class ConnectorConfig(_Model):
    name: str = Field(pattern=_NAME)
    type: str
    # the tenants whose submissions this connector may carry ("*": every tenant, a shared service)
    tenants: tuple[str, ...] = ("*",)
    options: dict[str, Any] = Field(default_factory=dict)
    status_updates: StatusUpdates | None = None
    retry: RetryPolicy = RetryPolicy()
    circuit: CircuitPolicy = CircuitPolicy()
    # deliveries sent at once for this connector; the worker's --concurrency when unset
    concurrency: int | None = Field(default=None, ge=1, le=256)


class RouteTarget(_Model):
    connector: str
    when: str | None = None

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except JMESPathError as exc:
                raise ValueError(f"condition is not valid JMESPath: {exc}") from None
        return value


class Route(_Model):
    form: str
    tenants: tuple[str, ...] = ("*",)
    to: tuple[RouteTarget, ...] = Field(min_length=1)


Role = Literal["viewer", "caseworker", "operator", "admin"]


class Staff(_Model):
    """A member of staff using the admin API: roles, and the tenant they work for ("*" for all)."""

    id: str = Field(pattern=_NAME)
    name: str = ""
    tenant: str = "*"
    roles: tuple[Role, ...] = Field(min_length=1)
    token_sha256: tuple[str, ...] = ()
    # development only: the token itself is given in this environment variable at start-up
    token_env: str | None = None
    # OpenID Connect sign-in: the identity provider's subject, or verified e-mail, of this person
    oidc_subject: str | None = None
    email: str | None = None

    def can(self, role: Role) -> bool:
        # each role includes the ones below it
        order = ("viewer", "caseworker", "operator", "admin")
        return any(order.index(mine) >= order.index(role) for mine in self.roles)

    def sees(self, tenant: str) -> bool:
        return self.tenant in ("*", tenant)


class RetentionRule(_Model):
    """Purge a form's payloads `days` after every delivery succeeded; references, deliveries,
    the timeline and the audit trail stay. The most specific rule (form, then tenant) wins."""

    form: str = "*"
    tenants: tuple[str, ...] = ("*",)
    days: int = Field(ge=0, le=36500)


Channel = Literal["face_to_face", "phone", "email", "post"]


class UnitCosts(_Model):
    """Cost of one transaction by each channel, in pounds (Socitm Insight channel-cost benchmarking)."""

    face_to_face: float = Field(default=10.53, ge=0)
    phone: float = Field(default=3.00, ge=0)
    email: float = Field(default=3.00, ge=0)
    post: float = Field(default=10.53, ge=0)
    online: float = Field(default=0.08, ge=0)


class SavingsEntry(_Model):
    """An entry of the optional `savings` section: either `unit_costs` (one entry at most) or a
    form's `replaces` (the channel it took over) and `rekeying_minutes` (officer time per case)."""

    form: str | None = None
    replaces: Channel = "phone"
    rekeying_minutes: float = Field(default=5, ge=0, le=1440)
    unit_costs: UnitCosts | None = None
    source: str = "Socitm Insight channel-cost benchmarking"


_MODELS: dict[str, type[_Model]] = {
    "tenants": Tenant,
    "clients": Client,
    "connectors": ConnectorConfig,
    "routes": Route,
    "staff": Staff,
    "retention": RetentionRule,
    "savings": SavingsEntry,
}


def hash_api_key(key: str) -> str:
    # API keys are long random tokens, so one SHA-256 is enough (no dictionary to guess from)
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class HubConfig:
    tenants: dict[str, Tenant]
    clients: dict[str, Client]
    connectors: dict[str, ConnectorConfig]
    routes: tuple[Route, ...]
    # api-key digest -> client id, built once so authentication is one dict look-up
    key_index: dict[str, str] = field(default_factory=dict)
    staff: dict[str, Staff] = field(default_factory=dict)
    staff_index: dict[str, str] = field(default_factory=dict)
    retention: tuple[RetentionRule, ...] = ()
    savings: tuple[SavingsEntry, ...] = ()

    @property
    def unit_costs(self) -> UnitCosts:
        return next((x.unit_costs for x in self.savings if x.unit_costs is not None), UnitCosts())

    @property
    def cost_source(self) -> str:
        return next((x.source for x in self.savings if x.unit_costs is not None), SavingsEntry().source)

    def savings_for(self, form_id: str) -> SavingsEntry:
        """The form's entry, or the defaults (replaces phone, 5 minutes' re-keying)."""
        return next((x for x in self.savings if x.form == form_id), SavingsEntry(form=form_id))

    def client_for_key(self, key: str) -> Client | None:
        client_id = self.key_index.get(hash_api_key(key))
        return self.clients[client_id] if client_id else None

    def staff_for_token(self, token: str) -> Staff | None:
        staff_id = self.staff_index.get(hash_api_key(token))
        return self.staff[staff_id] if staff_id else None

    def staff_for_identity(self, subject: str, email: str | None, email_verified: bool) -> Staff | None:
        """The member of staff an identity provider's person is: by subject first; by a verified
        e-mail address only for entries that name no subject (a subject never changes hands,
        an address might)."""
        for member in self.staff.values():
            if member.oidc_subject is not None and member.oidc_subject == subject:
                return member
        if email and email_verified:
            wanted = email.strip().casefold()
            for member in self.staff.values():
                if member.oidc_subject is None and member.email and member.email.strip().casefold() == wanted:
                    return member
        return None

    def forms_routed(self) -> set[str]:
        return {route.form for route in self.routes}


class _LineLoader(yaml.SafeLoader):
    """Records the line of every mapping so errors can point into the file."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[_LINE] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, environ: Mapping[str, str], where: str, problems: list[str]) -> Any:
    """Fills `${VAR}` and `${VAR:-default}` in strings (for endpoints, never for secrets)."""
    if isinstance(value, str):
        def fill(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(f"{where}: environment variable {name} is not set and has no default")
            return ""
        return _ENV_REF.sub(fill, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, where, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, where, problems) for v in value]
    return value


def _standards(value: Any, root: Path | None, where: str, problems: list[str]) -> Any:
    """Connector options may name a shipped standard as `standards:///<folder>/<file>` (such as a
    WSDL): the path of that file, under HUB_STANDARDS_DIR when it is set."""
    if isinstance(value, str) and is_standards_uri(value):
        try:
            path = standards_path(value, root)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            return value
        if not path.is_file():
            problems.append(f"{where}: {value} names {path}, which is not a file")
        return str(path)
    if isinstance(value, dict):
        return {k: _standards(v, root, where, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_standards(v, root, where, problems) for v in value]
    return value


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != _LINE}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


@dataclass(frozen=True)
class _Item:
    """One entry of a section, with where it stands and its raw form (which keeps the lines)."""

    where: str
    path: Path
    raw: Any

    def line_of(self, *keys: str | int) -> str:
        """file:line of a nested mapping of this entry, such as one target of a route."""
        node = self.raw
        for key in keys:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return self.where
        return f"{self.path}:{node[_LINE]}" if isinstance(node, dict) and _LINE in node else self.where


def _read_sections(directory: Path, environ: Mapping[str, str], problems: list[str]) -> dict[str, list[_Item]]:
    found: dict[str, list[_Item]] = {name: [] for name in SECTIONS}
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        problems.append(f"{directory}: no configuration files (*.yaml) found")
    for path in files:
        try:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader) or {}
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
            continue
        if not isinstance(document, dict):
            problems.append(f"{path}:1: expected a mapping with sections {', '.join(SECTIONS)}")
            continue
        for key, items in document.items():
            if key == _LINE:
                continue
            if key not in SECTIONS:
                problems.append(f"{path}:{document[_LINE]}: unknown section {key!r}; known: {', '.join(SECTIONS)}")
                continue
            if not isinstance(items, list):
                problems.append(f"{path}:{document[_LINE]}: section {key!r} must be a list")
                continue
            for item in items:
                where = f"{path}:{item.get(_LINE, '?') if isinstance(item, dict) else '?'}"
                found[key].append(_Item(where, path, _interpolate(item, environ, where, problems)))
    return found


def _validate(section: str, items: list[_Item], problems: list[str]) -> list[tuple[_Item, Any]]:
    model = _MODELS[section]
    valid: list[tuple[_Item, Any]] = []
    for item in items:
        try:
            valid.append((item, model.model_validate(_strip_lines(item.raw))))
        except ValidationError as exc:
            for error in exc.errors():
                loc = ".".join(str(part) for part in error["loc"]) or "(entry)"
                problems.append(f"{item.where}: {section[:-1]} {loc}: {error['msg']}")
    return valid


def load_config(directory: Path, environ: Mapping[str, str], standards_dir: Path | None = None) -> HubConfig:
    """Reads and cross-checks the configuration; raises ConfigError listing every problem.
    `standards_dir` is where `standards:///` paths in connector options point (default: shipped)."""
    problems: list[str] = []
    if not directory.is_dir():
        raise ConfigError(f"{directory}: configuration directory does not exist")
    sections = _read_sections(directory, environ, problems)
    sections["connectors"] = [
        _Item(item.where, item.path, _standards(item.raw, standards_dir, item.where, problems)) for item in sections["connectors"]
    ]
    tenants = _validate("tenants", sections["tenants"], problems)
    clients = _validate("clients", sections["clients"], problems)
    connectors = _validate("connectors", sections["connectors"], problems)
    routes = _validate("routes", sections["routes"], problems)
    staff = _validate("staff", sections["staff"], problems)
    retention = _validate("retention", sections["retention"], problems)
    savings = _validate("savings", sections["savings"], problems)
    if sum(1 for _, entry in savings if entry.unit_costs is not None) > 1:
        problems.append(f"{savings[-1][0].where}: savings unit_costs: given more than once")
    for item, entry in savings:
        if (entry.form is None) == (entry.unit_costs is None):
            problems.append(f"{item.where}: savings form: give either form (with replaces, rekeying_minutes) or unit_costs")

    def unique(items: list[tuple[_Item, Any]], attr: str, kind: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for item, model in items:
            key = getattr(model, attr)
            if key in seen:
                problems.append(f"{item.where}: {kind} {key!r} is defined twice")
            seen[key] = model
        return seen

    tenant_map = unique(tenants, "id", "tenant")
    client_map = unique(clients, "id", "client")
    connector_map = unique(connectors, "name", "connector")
    staff_map = unique(staff, "id", "staff member")
    staff_index: dict[str, str] = {}
    identities: dict[str, str] = {}
    for item, member in staff:
        if member.tenant != "*" and member.tenant not in tenant_map:
            problems.append(f"{item.where}: staff {member.id!r} names unknown tenant {member.tenant!r}")
        # one person at the identity provider must be one member of staff here
        for kind, value in (("oidc_subject", member.oidc_subject), ("email", (member.email or "").strip().casefold() or None)):
            if value is not None and identities.setdefault(f"{kind}:{value}", member.id) != member.id:
                problems.append(f"{item.where}: staff {member.id!r} has the same {kind} as {identities[f'{kind}:{value}']!r}")
        tokens = list(member.token_sha256)
        if member.token_env and environ.get(member.token_env):
            tokens.append(hash_api_key(environ[member.token_env]))
        for digest in tokens:
            staff_index[digest] = member.id
    key_index: dict[str, str] = {}
    for item, client in clients:
        if client.tenant not in tenant_map:
            problems.append(f"{item.where}: client {client.id!r} names unknown tenant {client.tenant!r}")
        digests = list(client.api_key_sha256)
        if client.api_key_env and environ.get(client.api_key_env):
            digests.append(hash_api_key(environ[client.api_key_env]))
        for digest in digests:
            if digest in key_index:
                problems.append(f"{item.where}: client {client.id!r} shares an API key with {key_index[digest]!r}")
            key_index[digest] = client.id
    for item, tenant_model in tenants:
        alerts = tenant_model.alerts
        if alerts is not None:
            mailer = connector_map.get(alerts.mail_connector)
            if mailer is None or mailer.type != "email":
                known = ", ".join(sorted(n for n, c in connector_map.items() if c.type == "email")) or "none"
                what = "unknown connector" if mailer is None else f"connector of type {mailer.type!r}, not an e-mail one,"
                problems.append(f"{item.where}: tenant alerts.mail_connector names {what} {alerts.mail_connector!r} (e-mail connectors: {known})")
    for item, connector in connectors:
        for tenant in connector.tenants:
            if tenant != "*" and tenant not in tenant_map:
                problems.append(f"{item.where}: connector {connector.name!r} names unknown tenant {tenant!r}")
    for item, rule in retention:
        for tenant in rule.tenants:
            if tenant != "*" and tenant not in tenant_map:
                problems.append(f"{item.where}: retention rule for {rule.form!r} names unknown tenant {tenant!r}")
    for item, route in routes:
        for index, target in enumerate(route.to):
            if target.connector not in connector_map:
                known = ", ".join(sorted(connector_map)) or "none"
                problems.append(f"{item.line_of('to', index)}: route for {route.form!r} names unknown connector {target.connector!r} (known: {known})")
                continue
            serves = connector_map[target.connector].tenants
            if "*" not in serves:
                outside = [t for t in (route.tenants if "*" not in route.tenants else tuple(tenant_map)) if t not in serves]
                if outside:
                    problems.append(
                        f"{item.line_of('to', index)}: route for {route.form!r} sends {', '.join(outside)}'s submissions "
                        f"to connector {target.connector!r}, which serves only {', '.join(serves)}"
                    )
        for tenant in route.tenants:
            if tenant != "*" and tenant not in tenant_map:
                problems.append(f"{item.where}: route for {route.form!r} names unknown tenant {tenant!r}")
    if problems:
        raise ConfigError("\n".join(problems))
    return HubConfig(
        tenants=tenant_map,
        clients=client_map,
        connectors=connector_map,
        routes=tuple(route for _, route in routes),
        key_index=key_index,
        staff=staff_map,
        staff_index=staff_index,
        retention=tuple(rule for _, rule in retention),
        savings=tuple(entry for _, entry in savings),
    )
