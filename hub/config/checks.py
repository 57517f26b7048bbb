"""`hub config check`: proves the whole configuration offline, listing every problem by file.

Schemas compile, routes name configured connectors and known forms, connector options are
valid, connectors call only hosts their tenants allow, tenants offer the forms their clients
and routes use, every routed pair has a mapping, and every mapping turns its cases into their records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.base import Connector, Secrets, files_refused
from connectors.registry import ConnectorRegistry
from hub.config.connector_hosts import connector_allow_list, outbound_problems
from hub.config.files import HubConfig, load_config
from hub.config.settings import Settings
from hub.delivery.mapping import RecordMapping, load_mappings
from hub.delivery.mapping_cases import mapping_cases
from hub.errors import HubError
from hub.intake.forms import FormRegistry, load_forms
from hub.privacy import retention


def check_configuration(
    settings: Settings, environ: Mapping[str, str], registry: ConnectorRegistry | None = None
) -> list[str]:
    problems: list[str] = []
    config: HubConfig | None = None
    forms: FormRegistry | None = None
    mappings: dict[tuple[str, str], RecordMapping] = {}
    try:
        config = load_config(settings.config_dir, environ, settings.standards_dir)
    except HubError as exc:
        problems.extend(str(exc).splitlines())
    try:
        forms = load_forms(settings.schemas_dir, settings.standards_dir)
    except HubError as exc:
        problems.extend(str(exc).splitlines())
    try:
        mappings = load_mappings(settings.mappings_dir)
    except HubError as exc:
        problems.extend(str(exc).splitlines())
    connectors: dict[str, Connector] = {}
    if config is not None:
        refused = outbound_problems(config, environ, settings.config_dir)
        problems.extend(problem.message for problem in refused)
        # a refused connector is not built: its WSDL may be on the very host that was refused
        skip = {problem.connector for problem in refused}
        connectors = _build_connectors(config, registry or ConnectorRegistry.from_entry_points(), environ, problems, skip)
        problems.extend(_check_tenant_forms(config))
    if config is not None and forms is not None:
        problems.extend(_check_routes(settings, config, forms, mappings))
        # a misspelt form in a retention rule would keep that form's payloads for ever
        problems.extend(retention.problems(config.retention, forms.ids()))
    if forms is not None:
        problems.extend(_check_front_doors(settings, forms))
        problems.extend(_check_fees(settings, forms, config))
    problems.extend(_check_notifications(settings, config, forms))
    problems.extend(_check_cases(settings, mappings, forms, connectors))
    problems.extend(_check_files(mappings, connectors))
    for connector in connectors.values():
        connector.close()
    return problems


def _build_connectors(
    config: HubConfig, registry: ConnectorRegistry, environ: Mapping[str, str], problems: list[str], skip: set[str | None]
) -> dict[str, Connector]:
    """Builds every connector offline, as the worker would: options valid, WSDLs load, operations exist."""
    built: dict[str, Connector] = {}
    for name, connector_config in sorted(config.connectors.items()):
        if name in skip:
            continue
        try:
            built[name] = registry.build(connector_config, Secrets(environ), connector_allow_list(config, connector_config))
        except HubError as exc:
            problems.append(f"connectors: {exc}")
            continue
        updates = connector_config.status_updates
        if updates is not None and updates.poll_seconds is not None and not built[name].can_poll_status:
            problems.append(
                f"connectors: {name}: status_updates.poll_seconds is set, but a {connector_config.type} connector "
                "cannot poll for status (configure status_poll, or let the back office push)"
            )
    return built


def _check_tenant_forms(config: HubConfig) -> list[str]:
    """A client may submit, and a tenant's route may carry, only forms its tenant offers."""
    problems: list[str] = []
    for client in config.clients.values():
        tenant = config.tenants.get(client.tenant)
        if tenant is not None and "*" not in client.forms:
            for form_id in client.forms:
                if not tenant.offers(form_id):
                    problems.append(f"clients: client {client.id!r} may submit {form_id!r}, which tenant {tenant.id!r} does not offer")
    for route in config.routes:
        for tenant_id in route.tenants:
            tenant = config.tenants.get(tenant_id)
            if tenant is not None and not tenant.offers(route.form):
                problems.append(f"routes: a route for {route.form!r} names tenant {tenant_id!r}, which does not offer that form")
    return problems


def _check_routes(
    settings: Settings, config: HubConfig, forms: FormRegistry, mappings: dict[tuple[str, str], RecordMapping]
) -> list[str]:
    problems: list[str] = []
    for route in config.routes:
        if forms.get(route.form) is None:
            problems.append(f"routes: route names unknown form {route.form!r} (known: {', '.join(forms.ids())})")
        for target in route.to:
            if (route.form, target.connector) not in mappings:
                problems.append(
                    f"routes: {route.form!r} goes to {target.connector!r} but there is no "
                    f"{settings.mappings_dir / f'{route.form}.{target.connector}.yaml'}"
                )
    # The forms and mappings folders may hold more than this council uses (the image ships every
    # form, and mappings to connectors it may not configure): only a form some tenant offers must
    # be routed. A mapping to a connector that is not configured is not used; a misspelt one
    # leaves its route without a mapping, which the loop above reports.
    offered = {form_id for form_id in forms.ids() if any(tenant.offers(form_id) for tenant in config.tenants.values())}
    for form_id in sorted(offered - config.forms_routed()):
        problems.append(f"{settings.schemas_dir / form_id}: form {form_id!r} has no route, so its submissions would reach no back office")
    for (form_id, _connector), mapping in sorted(mappings.items()):
        if forms.get(form_id) is None:
            problems.append(f"{mapping.path}: maps unknown form {form_id!r}")
    return problems


def _check_fees(settings: Settings, forms: FormRegistry, config: HubConfig | None) -> list[str]:
    """Each fee (config/payments/payments.yaml) names a form that exists and is routed: a fee on a
    form no route sends anywhere would take the resident's money for nothing."""
    from hub.payments.config import load_fees

    path = settings.config_dir / "payments" / "payments.yaml"
    try:
        fees = load_fees(settings.config_dir)
    except HubError as exc:
        return str(exc).splitlines()
    problems: list[str] = []
    for form_id, fee in fees.forms.items():
        if forms.get(form_id) is None:
            problems.append(f"{path}: fee for unknown form {form_id!r}")
        elif config is not None and form_id not in config.forms_routed():
            problems.append(f"{path}: fee for form {form_id!r}, which no route sends to a back office")
        for tenant in fee.tenants:
            if config is not None and tenant != "*" and tenant not in config.tenants:
                problems.append(f"{path}: fee for {form_id!r} names unknown tenant {tenant!r}")
    return problems


def _check_notifications(settings: Settings, config: HubConfig | None, forms: FormRegistry | None) -> list[str]:
    """Residents' messages (config/notifications/notifications.yaml): each entry names a form and
    tenants that exist, and each message it configures names a Notify template, one line per
    problem, as `<file>: notifications.0.acknowledgement.email_template: ...`."""
    from hub.notifications.config import KINDS, load_notification_config

    path = settings.config_dir / "notifications" / "notifications.yaml"
    try:
        loaded = load_notification_config(
            settings.config_dir, set(config.tenants) if config is not None else None, set(forms.ids()) if forms is not None else None)
    except HubError as exc:
        text = str(exc).removeprefix(f"{path}: ")
        # the loader joins its problems; each starts at its field
        return [f"{path}: {part}" for part in re.split(r"; (?=notifications\b)", text)]
    problems: list[str] = []
    for index, entry in enumerate(loaded.notifications):
        for kind in KINDS:
            message = entry.message(kind)
            if message is not None and not (message.email_template or message.sms_template):
                problems.append(f"{path}: notifications.{index}.{kind}: names no template "
                                "(give email_template and/or sms_template, ids from the templates' pages in Notify)")
    return problems


def _check_front_doors(settings: Settings, forms: FormRegistry) -> list[str]:
    """The Open311 services and GOV.UK Forms map each name a hub form that exists."""
    from hub.api.routes.govuk_forms import load_forms_map
    from hub.intake.georeport_services import load_services

    problems: list[str] = []
    services_path = settings.config_dir / "open311" / "services.yaml"
    govuk_path = settings.config_dir / "govuk" / "forms.yaml"
    try:
        for service in load_services(services_path).services:
            if forms.get(service.form) is None:
                problems.append(f"{services_path}: Open311 service {service.service_code!r} names unknown form {service.form!r}")
    except HubError as exc:
        problems.append(str(exc))
    try:
        for govuk_id, form_id in load_forms_map(govuk_path).forms.items():
            if forms.get(form_id) is None:
                problems.append(f"{govuk_path}: GOV.UK form {govuk_id} names unknown hub form {form_id!r}")
    except HubError as exc:
        problems.append(str(exc))
    return problems


def _check_cases(
    settings: Settings,
    mappings: dict[tuple[str, str], RecordMapping],
    forms: FormRegistry | None,
    connectors: Mapping[str, Connector],
) -> list[str]:
    problems: list[str] = []
    try:
        cases = mapping_cases(settings.mappings_dir, settings.schemas_dir)
    except HubError as exc:
        return str(exc).splitlines()
    for case in cases:
        mapping = mappings.get(case.key)
        if mapping is None:
            problems.append(f"{case.path}: no mapping {case.key[0]}.{case.key[1]}.yaml for this case")
            continue
        if forms is not None and (form := forms.get(case.key[0])) is not None:
            for error in form.errors(case.payload):
                problems.append(f"{case.path}: payload is not valid for the form: {error.pointer}: {error.message}")
        try:
            record: Any = mapping.apply(case.payload, case.meta, case.attachments)
        except HubError as exc:
            problems.append(f"{case.path}: mapping failed: {exc}")
            continue
        if record != case.expected:
            problems.append(f"{case.path}: mapping produced a different record than expected: {_difference(record, case.expected)}")
        if (connector := connectors.get(case.key[1])) is not None:
            for problem in connector.validate_record(case.expected):
                problems.append(f"{case.path}: expected record is not valid for connector {case.key[1]!r}: {problem}")
    return problems


def _check_files(mappings: Mapping[tuple[str, str], RecordMapping], connectors: Mapping[str, Connector]) -> list[str]:
    """`attach: file` only in a mapping to a connector that sends files (e-mail, REST): Open311,
    SOAP and AMQP would otherwise get a record without the resident's photo."""
    problems: list[str] = []
    for (_form, name), mapping in sorted(mappings.items()):
        connector = connectors.get(name)
        if connector is not None and mapping.file_fields and not connector.sends_files:
            problems.append(f"{mapping.path}: {files_refused(name, type(connector).__name__, mapping.file_fields)}")
    return problems


def _difference(actual: Any, expected: Any, path: str = "") -> str:
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected), key=str):
            if actual.get(key) != expected.get(key):
                return _difference(actual.get(key), expected.get(key), f"{path}/{key}")
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for index, (a, e) in enumerate(zip(actual, expected)):
            if a != e:
                return _difference(a, e, f"{path}/{index}")
    return f"at {path or '/'}: got {actual!r}, expected {expected!r}"
