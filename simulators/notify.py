"""A runnable fake of GOV.UK Notify's API (v2): send an e-mail or a text message from a template,
and read a notification back, behind Notify's own JWT check.

What the real `notifications-python-client` calls: `POST /v2/notifications/email`,
`POST /v2/notifications/sms` and `GET /v2/notifications/{id}`, each with
`Authorization: Bearer <JWT>` signed HS256 with the secret half of the API key, `iss` the service
id and `iat` within 30 seconds. The check uses the client library's own decoder, as Notify does.
Errors come in Notify's shape: `{"status_code": 400, "errors": [{"error": ..., "message": ...}]}`.
Tests drive `/_control/` to take the service down (503) and to list what was sent.
"""

from __future__ import annotations

import argparse
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from notifications_python_client.authentication import decode_jwt_token, get_token_issuer
from notifications_python_client.errors import TokenError

from simulators.control import FailurePlan, FailureSwitch, add_control_routes

_PLACEHOLDER = re.compile(r"\(\(([^)]+)\)\)")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()-]{10,20}$")


@dataclass(frozen=True)
class Template:
    """A template of the service: `type` email or sms; `((name))` placeholders are filled from
    the personalisation, and every one must be given (Notify refuses a message missing one)."""

    id: str
    type: str
    body: str
    subject: str = ""

    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.subject + self.body))

    def render(self, text: str, values: dict[str, Any]) -> str:
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), text)


def api_key(name: str = "hub", service_id: str | None = None, secret: str | None = None) -> str:
    """A key in Notify's format: `<name>-<service id>-<secret>`, both UUIDs."""
    return f"{name}-{service_id or uuid.uuid4()}-{secret or uuid.uuid4()}"


def split_key(key: str) -> tuple[str, str]:
    """(service id, secret) of a key, read from its end as the client library does."""
    return key[-73:-37], key[-36:]


@dataclass
class NotifyState:
    """Keys, templates, what was sent and the failure plan, behind one lock."""

    keys: dict[str, str] = field(default_factory=dict)  # service id -> secret
    templates: dict[str, Template] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, dict[str, Any]] = {}
        self.failures = FailureSwitch(FailurePlan(count=0))
        self.refused = 0

    def add_key(self, key: str) -> None:
        service_id, secret = split_key(key)
        self.keys[service_id] = secret

    def add_template(self, template: Template) -> None:
        self.templates[template.id] = template

    def reset(self) -> None:
        with self._lock:
            self._sent.clear()
            self.refused = 0
        self.failures.reset()

    def store(self, notification: dict[str, Any]) -> None:
        with self._lock:
            self._sent[notification["id"]] = notification

    def get(self, notification_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._sent.get(notification_id)

    def sent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._sent.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sent": len(self._sent), "requests": self.failures.requests, "refused": self.refused}


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"status_code": status, "errors": [{"error": error, "message": message}]}, status_code=status)


def _authorised(state: NotifyState, header: str | None) -> str | None:
    """None when the bearer JWT is good; else Notify's message for why not."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "Unauthorized: authentication token must be provided"
    try:
        issuer = get_token_issuer(token)
    except TokenError:
        return "Invalid token: signature, api token is not valid"
    secret = state.keys.get(str(issuer))
    if secret is None:
        return "Invalid token: service not found"
    try:
        decode_jwt_token(token, secret)
    except TokenError as exc:
        return f"Invalid token: {exc.message if hasattr(exc, 'message') else 'signature, api token not found'}"
    return None


def create_app(state: NotifyState | None = None, public_url: str = "") -> FastAPI:
    notify = state if state is not None else NotifyState()
    app = FastAPI(title="GOV.UK Notify simulator (API v2)")
    app.state.notify = notify

    async def send(request: Request, kind: str) -> JSONResponse:
        refused = _authorised(notify, request.headers.get("authorization"))
        if refused is not None:
            notify.refused += 1
            return _error(403, "AuthError", refused)
        failure = notify.failures.take()
        if failure is not None and failure.mode == "status":
            return _error(failure.status, "Exception" if failure.status >= 500 else "BadRequestError", "Simulated failure")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadRequestError", "Invalid JSON supplied in POST data")
        address_field = "email_address" if kind == "email" else "phone_number"
        problems = [f"{name} is a required property" for name in (address_field, "template_id") if not body.get(name)]
        if problems:
            return _error(400, "ValidationError", problems[0])
        address = str(body[address_field])
        if not (_EMAIL if kind == "email" else _PHONE).match(address):
            return _error(400, "ValidationError", f"{address_field} Not a valid {'email address' if kind == 'email' else 'phone number'}")
        template = notify.templates.get(str(body["template_id"]))
        if template is None:
            return _error(400, "BadRequestError", "Template not found")
        if template.type != kind:
            return _error(400, "BadRequestError", f"{kind} template is not suitable for {template.type} notification")
        values = body.get("personalisation") or {}
        missing = sorted(template.placeholders() - set(values))
        if missing:
            return _error(400, "BadRequestError", f"Missing personalisation: {', '.join(missing)}")
        notification_id = str(uuid.uuid4())
        base = public_url or str(request.base_url).rstrip("/")
        content: dict[str, Any] = {"body": template.render(template.body, values)}
        if kind == "email":
            content |= {"subject": template.render(template.subject, values), "from_email": "council@notifications.service.gov.uk"}
        else:
            content["from_number"] = "GOVUK"
        now = datetime.now(UTC).isoformat()
        notify.store({
            "id": notification_id, "reference": body.get("reference"), "type": kind, "status": "delivered",
            "email_address": address if kind == "email" else None, "phone_number": address if kind == "sms" else None,
            "template": {"id": template.id, "version": 1, "uri": f"{base}/v2/template/{template.id}"},
            "body": content["body"], "subject": content.get("subject"), "personalisation": values,
            "created_at": now, "sent_at": now, "completed_at": now, "created_by_name": None,
        })
        return JSONResponse({
            "id": notification_id, "reference": body.get("reference"), "content": content,
            "uri": f"{base}/v2/notifications/{notification_id}",
            "template": {"id": template.id, "version": 1, "uri": f"{base}/v2/template/{template.id}"},
            "scheduled_for": None,
        }, status_code=201)

    @app.post("/v2/notifications/email")
    async def send_email(request: Request) -> JSONResponse:
        return await send(request, "email")

    @app.post("/v2/notifications/sms")
    async def send_sms(request: Request) -> JSONResponse:
        return await send(request, "sms")

    @app.get("/v2/notifications/{notification_id}")
    async def get_notification(notification_id: str, request: Request) -> JSONResponse:
        refused = _authorised(notify, request.headers.get("authorization"))
        if refused is not None:
            return _error(403, "AuthError", refused)
        found = notify.get(notification_id)
        if found is None:
            return _error(404, "NoResultFound", "No result found")
        return JSONResponse({k: v for k, v in found.items() if k != "personalisation"})

    add_control_routes(app, FailurePlan, notify.failures.arm, notify.stats, notify.reset, {"notifications": notify.sent})
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="GOV.UK Notify simulator")
    parser.add_argument("--port", type=int, default=8110)
    parser.add_argument("--api-key", default=None, help="the key the hub will use (default: a new one, printed)")
    args = parser.parse_args(argv)
    state = NotifyState()
    key = args.api_key or api_key("hub", str(uuid.uuid4()), str(uuid.uuid4()))
    state.add_key(key)
    for template in DEMO_TEMPLATES:
        state.add_template(template)
    print(f"HUB_NOTIFY_API_KEY={key}\nHUB_NOTIFY_BASE_URL=http://127.0.0.1:{args.port}")
    uvicorn.run(create_app(state), host="127.0.0.1", port=args.port, log_level="warning")


# the templates config/notifications/notifications.yaml names, as a council would make them in Notify
DEMO_TEMPLATES = (
    Template("5c3d1a8e-0f4b-4d7e-9a51-2f6b8c0e1a01", "email", "We have your request ((form_title)). Your reference is ((reference)).",
             "Your reference ((reference))"),
    Template("5c3d1a8e-0f4b-4d7e-9a51-2f6b8c0e1a02", "email", "Your request ((reference)) is now ((status)).", "Request ((reference)) closed"),
    Template("5c3d1a8e-0f4b-4d7e-9a51-2f6b8c0e1a03", "sms", "Council: we have your request. Reference ((reference))."),
    Template("5c3d1a8e-0f4b-4d7e-9a51-2f6b8c0e1a04", "sms", "Council: request ((reference)) is now ((status))."),
)

if __name__ == "__main__":
    main()
