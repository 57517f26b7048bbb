"""Payment before delivery: a paid form's submission is stored with its deliveries held, a GOV.UK
Pay payment is created for it, and the payment's outcome (learnt on the resident's return, by the
worker's `payments` job, or by `hub payments reconcile`) releases or cancels the deliveries.

Every way in ends in `Payments.refresh`, which asks GOV.UK Pay and stores what it says; a payment
GOV.UK Pay could not create (an outage) is created on the next refresh, so no submission is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.logs import get_logger
from hub.payments.client import PayClient, PayError, PaymentState
from hub.payments.config import Fee, Fees, load_fees
from hub.runtime import Runtime
from hub.store import payments as store
from hub.store.submissions import Accepted, NewSubmission

log = get_logger("hub.payments")


class Payments:
    """One per process: the fees of config/payments/payments.yaml and a GOV.UK Pay client."""

    def __init__(self, runtime: Runtime, fees: Fees | None = None, client: PayClient | None = None) -> None:
        self.runtime = runtime
        self.fees = fees if fees is not None else load_fees(runtime.settings.config_dir)
        self._client = client

    @classmethod
    def of(cls, runtime: Runtime) -> Payments:
        """The runtime's one Payments, made on first use."""
        found = runtime.__dict__.get("_payments")
        if not isinstance(found, Payments):
            found = cls(runtime)
            runtime.__dict__["_payments"] = found
        return found

    @property
    def client(self) -> PayClient:
        if self._client is None:
            settings = self.runtime.settings
            key = settings.pay_api_key.get_secret_value() if settings.pay_api_key else ""
            self._client = PayClient(settings.pay_url, key, settings.pay_timeout_seconds)
        return self._client

    def fee_for(self, tenant: str, form_id: str) -> Fee | None:
        return self.fees.for_form(tenant, form_id)

    def return_url(self, row: store.PaymentRow) -> str:
        """GOV.UK Pay sends the resident here at the end (`GET /v1/payments/return/{token}`)."""
        return f"{self.runtime.settings.public_url.rstrip('/')}/v1/payments/return/{row.return_token}"

    def accept(self, new: NewSubmission, fee: Fee) -> Accepted:
        """Stores the submission with its deliveries held, then creates its payment (at most one
        try here: an outage leaves it for the worker's job)."""
        accepted = store.accept_held(self.runtime.engine, new, fee.amount_pence)
        if accepted.created:
            row = store.for_reference(self.runtime.engine, new.tenant, accepted.reference)
            if row is not None:
                self._create(row, fee)
        return store.paid_receipt(self.runtime.engine, accepted)

    def _create(self, row: store.PaymentRow, fee: Fee) -> None:
        try:
            state = self.client.create(fee.amount_pence, fee.description, fee.payment_reference(row.reference),
                                       self.return_url(row), row.reference)
        except PayError as exc:
            log.warning("payment_create_failed", reference=row.reference, error=str(exc))
            store.creation_failed(self.runtime.engine, row, str(exc))
            return
        store.created(self.runtime.engine, row, state.payment_id, state.next_url)
        log.info("payment_created", reference=row.reference, payment_id=state.payment_id, amount_pence=fee.amount_pence)

    def refresh(self, row: store.PaymentRow) -> str:
        """Asks GOV.UK Pay about one unfinished payment and stores the answer; returns the hub's
        view of it (`pending`, `success`, `failed`, `cancelled`, `expired`, `unavailable`)."""
        if row.payment_id is None:
            fee = self.fee_for(row.tenant, row.form_id)
            if fee is None:
                store.settle(self.runtime.engine, row, "error", "the form no longer has a fee configured")
                return "failed"
            self._create(row, fee)
            return "pending"
        try:
            state: PaymentState = self.client.get(row.payment_id)
        except PayError as exc:
            log.warning("payment_refresh_failed", reference=row.reference, payment_id=row.payment_id, error=str(exc))
            return "unavailable"
        outcome = state.outcome
        if outcome == "pending":
            store.progressed(self.runtime.engine, row, state.status)
            return outcome
        if store.settle(self.runtime.engine, row, outcome, state.message):
            # released deliveries have outbox rows: the relay's next sweep (HUB_RELAY_SWEEP_SECONDS) sends them
            log.info("payment_settled", reference=row.reference, payment_id=row.payment_id, outcome=outcome)
        return outcome

    def run(self) -> int:
        """The worker's `payments` job: refreshes every unfinished payment, oldest first."""
        rows = store.unfinished(self.runtime.engine)
        for row in rows:
            self.refresh(row)
        return len(rows)

    def reconcile(self, older_than: timedelta, tenant: str | None = None) -> list[tuple[store.PaymentRow, str]]:
        """Payments whose resident never came back through the return URL, started more than
        `older_than` ago: each refreshed, with the outcome."""
        cutoff = datetime.now(UTC) - older_than
        rows = store.unfinished(self.runtime.engine, limit=10_000, tenant=tenant, created_before=cutoff, unreturned=True)
        return [(row, self.refresh(row)) for row in rows]
