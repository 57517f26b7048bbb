"""The declarative part of the customer record, read from config/residents/residents.yaml:
which reply field (or accepted answer) of which connector is which kind of reference, and how
each form is pre-filled, from the record or from a lookup to a back office.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ConfigError

# the kinds of reference a back office gives a resident
KINDS = ("crm_contact_id", "council_tax_account", "uprn", "planning_applicant_id")
_KIND = r"^[a-z][a-z0-9_]{0,31}$"


def _compiled(value: str) -> str:
    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        raise ValueError(f"{value!r} is not valid JMESPath: {exc}") from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LearnRule(_Model):
    """What one connector tells the hub about a resident once it has taken a record:
    `external_reference` names the kind its own reference is; `reply` maps a kind to a JMESPath
    into its reply; `payload` to one into the submission it accepted (an address's UPRN)."""

    connector: str
    external_reference: str | None = Field(default=None, pattern=_KIND)
    reply: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, str] = Field(default_factory=dict)

    @field_validator("reply", "payload")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            _compiled(path)
        return value


class Lookup(_Model):
    """One read of a back office: `operation` of `connector`'s service, called with `argument`
    set to the resident's reference of kind `needs`; `fields` maps a name to a JMESPath in the reply."""

    connector: str
    operation: str
    needs: str = Field(pattern=_KIND)
    argument: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    fields: dict[str, str]

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            _compiled(path)
        return value


class PrefillField(_Model):
    """One field of a form (`pointer`, a JSON pointer into its payload) and where its value comes
    from: the record (`reference`, a kind) or a lookup (`lookup` and the lookup's `field`)."""

    pointer: str = Field(pattern=r"^(/[^/]+)+$")
    reference: str | None = Field(default=None, pattern=_KIND)
    lookup: str | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PrefillField:
        if (self.reference is None) == (self.lookup is None):
            raise ValueError(f"{self.pointer}: give either `reference` or `lookup`")
        if self.lookup is not None and self.field is None:
            raise ValueError(f"{self.pointer}: a `lookup` needs the lookup's `field`")
        return self


class ResidentConfig(_Model):
    kinds: tuple[str, ...] = KINDS
    learn: tuple[LearnRule, ...] = ()
    lookups: dict[str, Lookup] = Field(default_factory=dict)
    forms: dict[str, tuple[PrefillField, ...]] = Field(default_factory=dict)
    # how long a lookup's answer is reused for one resident
    cache_seconds: float = Field(default=60.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> ResidentConfig:
        problems: list[str] = []
        for rule in self.learn:
            named = [rule.external_reference, *rule.reply, *rule.payload]
            problems += [f"learn {rule.connector}: unknown kind {k!r}" for k in named if k is not None and k not in self.kinds]
        for name, lookup in self.lookups.items():
            if lookup.needs not in self.kinds:
                problems.append(f"lookup {name}: unknown kind {lookup.needs!r}")
        for form, fields in self.forms.items():
            for item in fields:
                if item.reference is not None and item.reference not in self.kinds:
                    problems.append(f"form {form} {item.pointer}: unknown kind {item.reference!r}")
                if item.lookup is not None:
                    used = self.lookups.get(item.lookup)
                    if used is None:
                        problems.append(f"form {form} {item.pointer}: unknown lookup {item.lookup!r}")
                    elif item.field not in used.fields:
                        problems.append(f"form {form} {item.pointer}: lookup {item.lookup} has no field {item.field!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rules_for(self, connector: str) -> list[LearnRule]:
        return [rule for rule in self.learn if rule.connector == connector]


def load_resident_config(config_dir: Path) -> ResidentConfig:
    """config/residents/residents.yaml, or an empty record when the file is absent."""
    path = config_dir / "residents" / "residents.yaml"
    if not path.exists():
        return ResidentConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return ResidentConfig.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
