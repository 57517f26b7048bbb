"""A runnable fake of GOV.UK Pay's public API: create a payment, get it, list its events, in the
shapes of GOV.UK Pay's own OpenAPI document (tests/unit/test_pay_simulator.py checks them).

The resident's side is a small page at `_links.next_url` with three buttons: pay, fail (card
declined) or cancel; a payment nobody finishes expires after `expiry_seconds` (GOV.UK Pay: 90 min).
`/_control/payments/{id}/{complete|fail|cancel}` does the same for tests and the demo.
"""

from __future__ import annotations

import argparse
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from simulators.control import DemoServer, FailurePlan, FailureSwitch, add_control_routes

# GOV.UK Pay's finished states and the code and message it gives each failure
_FAILURES = {
    ("failed", "declined"): ("P0010", "Payment method rejected"),
    ("failed", "expired"): ("P0020", "Payment expired"),
    ("cancelled", "declined"): ("P0030", "Payment was cancelled by the user"),
}


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass
class Payment:
    payment_id: str
    amount: int
    description: str
    reference: str
    return_url: str
    created: datetime
    status: str = "created"
    # why a failed payment failed: "declined" or "expired" (GOV.UK Pay's codes P0010 and P0020)
    reason: str = "declined"
    # (status, when) for each state the payment passed through
    events: list[tuple[str, datetime]] = field(default_factory=list)


class PayState:
    """Payments and the failure plan behind one lock: uvicorn serves beside the test's threads."""

    def __init__(self, api_key: str, base_url: str = "http://127.0.0.1:8105", expiry_seconds: float = 5400.0) -> None:
        self.api_key, self.base_url, self.expiry_seconds = api_key, base_url, expiry_seconds
        self._lock = threading.Lock()
        self.failures = FailureSwitch(FailurePlan(count=0))
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._payments: dict[str, Payment] = {}
            self._by_key: dict[str, str] = {}
        self.failures.reset()

    def create(self, body: dict[str, Any], key: str | None) -> tuple[Payment, bool]:
        now = datetime.now(UTC)
        with self._lock:
            if key and key in self._by_key:
                return self._payments[self._by_key[key]], False
            payment = Payment(secrets.token_hex(13), body["amount"], body["description"], body["reference"], body["return_url"], now)
            payment.events.append(("created", now))
            self._payments[payment.payment_id] = payment
            if key:
                self._by_key[key] = payment.payment_id
            return payment, True

    def get(self, payment_id: str) -> Payment | None:
        with self._lock:
            payment = self._payments.get(payment_id)
            expired = payment is not None and datetime.now(UTC) - payment.created > timedelta(seconds=self.expiry_seconds)
            if payment is not None and expired and not _finished(payment.status):
                # GOV.UK Pay reports an expired payment as failed, code P0020
                self._move(payment, "failed", "expired")
            return payment

    def finish(self, payment_id: str, status: str) -> Payment | None:
        """The resident's choice on the payment page: success, failed or cancelled."""
        payment = self.get(payment_id)
        if payment is None:
            return None
        with self._lock:
            if not _finished(payment.status):
                if status == "success":
                    self._move(payment, "started")
                    self._move(payment, "submitted")
                self._move(payment, status)
        return payment

    @staticmethod
    def _move(payment: Payment, status: str, reason: str = "declined") -> None:
        payment.status, payment.reason = status, reason
        payment.events.append((status, datetime.now(UTC)))

    def payments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"payment_id": p.payment_id, "reference": p.reference, "amount": p.amount, "status": p.status}
                    for p in self._payments.values()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for payment in self._payments.values():
                counts[payment.status] = counts.get(payment.status, 0) + 1
        return {"payments": sum(counts.values()), "by_status": counts, "requests": self.failures.requests}

    def links(self, payment: Payment) -> dict[str, Any]:
        base = f"{self.base_url}/v1/payments/{payment.payment_id}"
        links: dict[str, Any] = {"self": {"href": base, "method": "GET"}, "events": {"href": f"{base}/events", "method": "GET"}}
        if not _finished(payment.status):
            links["next_url"] = {"href": f"{self.base_url}/secure/{payment.payment_id}", "method": "GET"}
            links["cancel"] = {"href": f"{base}/cancel", "method": "POST"}
        return links


def _finished(status: str) -> bool:
    return status in ("success", "failed", "cancelled", "expired", "error")


def _state(status: str, reason: str = "declined") -> dict[str, Any]:
    state: dict[str, Any] = {"status": status, "finished": _finished(status)}
    if (status, reason) in _FAILURES:
        state["code"], state["message"] = _FAILURES[(status, reason)]
    return state


def _error(status: int, code: str, description: str, field: str | None = None) -> JSONResponse:
    body = {"code": code, "description": description} | ({"field": field} if field else {})
    return JSONResponse(body, status_code=status)


def payment_body(pay: PayState, payment: Payment) -> dict[str, Any]:
    """A payment as `GET /v1/payments/{id}` (PaymentWithAllLinks) and create (CreatePaymentResult) give it."""
    return {
        "amount": payment.amount,
        "description": payment.description,
        "reference": payment.reference,
        "language": "en",
        "state": _state(payment.status, payment.reason),
        "payment_id": payment.payment_id,
        "payment_provider": "sandbox",
        "created_date": _stamp(payment.created),
        "return_url": payment.return_url,
        "delayed_capture": False,
        "moto": False,
        "_links": pay.links(payment),
    }


def create_app(pay: PayState) -> FastAPI:
    app = FastAPI(title="GOV.UK Pay simulator")

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {pay.api_key}"

    def failure() -> JSONResponse | None:
        plan = pay.failures.take()
        if plan is not None:
            return _error(plan.status, "P0999", "GOV.UK Pay is experiencing technical problems")
        return None

    @app.post("/v1/payments")
    async def create(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        if (failed := failure()) is not None:
            return failed
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "P0197", "Unable to parse JSON")
        for name, kind in (("amount", int), ("description", str), ("reference", str), ("return_url", str)):
            if name not in body:
                return _error(400, "P0101", f"Missing mandatory attribute: {name}", name)
            if not isinstance(body[name], kind) or isinstance(body[name], bool):
                return _error(422, "P0102", f"Invalid attribute value: {name}", name)
        if not 1 <= body["amount"] <= 10_000_000:
            return _error(422, "P0102", "Invalid attribute value: amount. Must be less than or equal to 10000000", "amount")
        payment, created = pay.create(body, request.headers.get("idempotency-key"))
        return JSONResponse(payment_body(pay, payment), status_code=201 if created else 200)

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        if (failed := failure()) is not None:
            return failed
        payment = pay.get(payment_id)
        if payment is None:
            return _error(404, "P0200", f"paymentId not found: {payment_id}")
        return JSONResponse(payment_body(pay, payment))

    @app.get("/v1/payments/{payment_id}/events")
    async def events(payment_id: str, request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        if (failed := failure()) is not None:
            return failed
        payment = pay.get(payment_id)
        if payment is None:
            return _error(404, "P0300", f"paymentId not found: {payment_id}")
        url = f"{pay.base_url}/v1/payments/{payment_id}"
        return JSONResponse({
            "payment_id": payment_id,
            "events": [
                {"payment_id": payment_id, "state": _state(status, payment.reason if status == payment.status else "declined"), "updated": _stamp(at),
                 "_links": {"payment_url": {"href": url, "method": "GET"}}}
                for status, at in payment.events
            ],
            "_links": {"self": {"href": f"{url}/events", "method": "GET"}},
        })

    @app.get("/secure/{payment_id}", response_class=HTMLResponse)
    async def page(payment_id: str) -> Response:
        payment = pay.get(payment_id)
        if payment is None:
            return HTMLResponse("<h1>Payment not found</h1>", status_code=404)
        if _finished(payment.status):
            return RedirectResponse(payment.return_url, status_code=303)
        buttons = "".join(
            f'<form method="post" action="/secure/{payment_id}/{action}"><button>{label}</button></form>'
            for action, label in (("complete", "Pay now"), ("fail", "Decline the card"), ("cancel", "Cancel payment"))
        )
        return HTMLResponse(f"<h1>Pay £{payment.amount / 100:.2f}</h1><p>{payment.description}</p>{buttons}")

    async def choose(payment_id: str, action: str) -> Payment | None:
        return pay.finish(payment_id, {"complete": "success", "fail": "failed", "cancel": "cancelled"}[action])

    @app.post("/secure/{payment_id}/{action}")
    async def resident_chose(payment_id: str, action: str) -> Response:
        if action not in ("complete", "fail", "cancel"):
            return HTMLResponse("<h1>Not found</h1>", status_code=404)
        payment = await choose(payment_id, action)
        if payment is None:
            return HTMLResponse("<h1>Payment not found</h1>", status_code=404)
        # GOV.UK Pay sends the resident back to the service's return URL, whatever the outcome
        return RedirectResponse(payment.return_url, status_code=303)

    @app.post("/_control/payments/{payment_id}/{action}")
    async def control_chose(payment_id: str, action: str) -> Response:
        if action not in ("complete", "fail", "cancel"):
            return JSONResponse({"detail": "action is complete, fail or cancel"}, status_code=404)
        payment = await choose(payment_id, action)
        if payment is None:
            return JSONResponse({"detail": f"no payment {payment_id}"}, status_code=404)
        return JSONResponse({"payment_id": payment_id, "status": payment.status, "return_url": payment.return_url})

    add_control_routes(app, FailurePlan, pay.failures.arm, pay.stats, pay.reset, {"payments": pay.payments})
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # only the runnable entry point needs a server

    parser = argparse.ArgumentParser(prog="python -m simulators.pay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8105)
    parser.add_argument("--api-key", default="api_test_simulator")
    parser.add_argument("--expiry-seconds", type=float, default=5400.0)
    args = parser.parse_args(argv)
    state = PayState(args.api_key, f"http://{args.host}:{args.port}", args.expiry_seconds)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()


class PayServer(DemoServer):
    """The simulator on loopback, its base URL known to its state once the port is."""

    def __init__(self, state: PayState) -> None:
        super().__init__("pay", create_app(state), lambda: _summary(state))
        state.base_url = self.url
        self.state = state


def _summary(state: PayState) -> str:
    stats = state.stats()
    by = ", ".join(f"{n} {s}" for s, n in sorted(stats["by_status"].items())) or "none"
    return f"{stats['payments']} payment(s): {by}"


def demo(env: dict[str, str]) -> list[DemoServer]:
    """GOV.UK Pay for the paid forms (config/payments/payments.yaml)."""
    key = env.setdefault("HUB_PAY_API_KEY", "api_test_" + secrets.token_urlsafe(24))
    server = PayServer(PayState(key, expiry_seconds=float(env.get("PAY_SIMULATOR_EXPIRY_SECONDS", "5400"))))
    env["HUB_PAY_URL"] = server.url
    return [server]
