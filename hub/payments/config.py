"""Which forms carry a fee, read from config/payments/payments.yaml: the amount, the description
GOV.UK Pay shows, the payment reference made from the submission's, and where the resident goes
once the hub has seen the outcome.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _template(value: str) -> str:
    try:
        value.format(reference="HUB-0000000000")
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{value!r} may name only {{reference}}") from None
    return value


class Fee(_Model):
    """The fee of one form: GOV.UK Pay's `amount` (pence, 1 to 10,000,000), `description` and `reference`."""

    amount_pence: int = Field(ge=1, le=10_000_000)
    description: str = Field(min_length=1, max_length=255)
    reference: str = Field(default="{reference}", min_length=1, max_length=255)
    return_url: str = Field(pattern=r"^https?://")
    tenants: tuple[str, ...] = ("*",)

    _templates = field_validator("reference", "return_url")(classmethod(lambda cls, value: _template(value)))

    def applies_to(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def payment_reference(self, reference: str) -> str:
        return self.reference.format(reference=reference)

    def resident_return_url(self, reference: str) -> str:
        return self.return_url.format(reference=reference)


class Fees(_Model):
    forms: dict[str, Fee] = Field(default_factory=dict)

    def for_form(self, tenant: str, form_id: str) -> Fee | None:
        fee = self.forms.get(form_id)
        return fee if fee is not None and fee.applies_to(tenant) else None


def load_fees(config_dir: Path) -> Fees:
    """`<config_dir>/payments/payments.yaml`, or no fees when there is none; ConfigError naming
    every problem when it does not validate."""
    path = config_dir / "payments" / "payments.yaml"
    if not path.is_file():
        return Fees()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Fees.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(problems)) from None
