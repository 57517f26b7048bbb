"""Which messages residents get through GOV.UK Notify, read from
config/notifications/notifications.yaml: per form and tenant, where the resident's e-mail address
and mobile number are in the answers, and for each kind of message its Notify templates and the
personalisation each template is filled with.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError

KINDS = ("acknowledgement", "closed")
# what the hub itself can put in a template, besides answers named by JSON pointer ("/name/first")
HUB_VALUES = ("reference", "form_id", "form_title", "tenant_name", "status", "received_date")
_POINTER = r"^(/[^/]+)+$"


def _template_id(value: str | None) -> str | None:
    if value is not None:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a Notify template id (a UUID, from the template's page in Notify)") from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Model):
    """One kind of message: the e-mail and/or text-message template, and the personalisation,
    each name in the template mapped to a hub value or a JSON pointer into the answers."""

    email_template: str | None = None
    sms_template: str | None = None
    personalisation: dict[str, str] = Field(default_factory=dict)

    _ids = field_validator("email_template", "sms_template")(classmethod(lambda cls, value: _template_id(value)))

    @field_validator("personalisation")
    @classmethod
    def _sources(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if not source.startswith("/") and source not in HUB_VALUES:
                raise ValueError(f"{name}: {source!r} is neither a JSON pointer into the answers nor one of {', '.join(HUB_VALUES)}")
        return value


class FormNotifications(_Model):
    form: str
    tenants: tuple[str, ...] = ("*",)
    # JSON pointers to the resident's e-mail address and mobile number in the answers (x-pii fields)
    email: str | None = Field(default=None, pattern=_POINTER)
    phone: str | None = Field(default=None, pattern=_POINTER)
    acknowledgement: Message | None = None
    closed: Message | None = None

    def message(self, kind: str) -> Message | None:
        found: Message | None = getattr(self, kind)
        return found


class NotificationConfig(_Model):
    notifications: tuple[FormNotifications, ...] = ()

    def for_submission(self, tenant: str, form_id: str) -> FormNotifications | None:
        """The entry for this form: one naming the tenant wins over one for every tenant."""
        matching = [n for n in self.notifications if n.form == form_id and ("*" in n.tenants or tenant in n.tenants)]
        matching.sort(key=lambda n: "*" in n.tenants)
        return matching[0] if matching else None

    def forms(self, kind: str) -> set[str]:
        return {n.form for n in self.notifications if n.message(kind) is not None}


def _problems(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)


def load_notification_config(config_dir: Path, tenants: set[str] | None = None, forms: set[str] | None = None) -> NotificationConfig:
    """config/notifications/notifications.yaml (none: no messages); every problem names its field,
    as `notifications.0.acknowledgement.email_template: ...`."""
    path = config_dir / "notifications" / "notifications.yaml"
    if not path.exists():
        return NotificationConfig()
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        config = NotificationConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None
    problems = []
    for index, entry in enumerate(config.notifications):
        if forms is not None and entry.form not in forms:
            problems.append(f"notifications.{index}.form: no form {entry.form!r}")
        for tenant in entry.tenants:
            if tenants is not None and tenant != "*" and tenant not in tenants:
                problems.append(f"notifications.{index}.tenants: no tenant {tenant!r}")
        for kind in KINDS:
            message = entry.message(kind)
            if message is None:
                continue
            if message.email_template and entry.email is None:
                problems.append(f"notifications.{index}.email: {kind} has an email_template but the entry names no e-mail field")
            if message.sms_template and entry.phone is None:
                problems.append(f"notifications.{index}.phone: {kind} has an sms_template but the entry names no phone field")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return config
