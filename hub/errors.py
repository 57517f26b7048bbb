"""The hub's one error tree. Every error the hub raises on purpose is a HubError, and each leaf
means one thing to the outside: a request error is one problem type (RFC 9457, `/problems/<kind>`),
a delivery error is one delivery outcome, and the rest stop a process or a command.

    HubError
    ├── ConfigError                 configuration or a setting that cannot be used: the process does not
    │   │                           start (during a delivery, e.g. a credential's variable unset: Park)
    │   └── UnknownKey              sealed data no key opens (hub.privacy.sealing): Park
    ├── SchemaError                 a form's JSON Schema does not compile: the process does not start
    ├── SessionError                a staff session token that is not one of ours (hub.auth.sessions)
    │   └── SessionExpired
    ├── RequestError                a request the hub refuses; `status` and `kind` name its problem type
    │   ├── BadRequest              400 bad-request
    │   ├── MalformedJson           400 malformed-json
    │   ├── Unauthorized            401 unauthorized
    │   ├── InvalidSignature        401 invalid-signature
    │   ├── Forbidden               403 forbidden
    │   ├── BadLinkSignature        403 bad-link-signature  (a signed attachment link that was not signed by the hub)
    │   ├── NotFound                404 not-found
    │   ├── MethodNotAllowed        405 method-not-allowed
    │   ├── IdempotencyConflict     409 idempotency-conflict  (`reference`: the first submission)
    │   ├── Conflict                409 conflict
    │   ├── TooManyWebhooks         409 too-many-webhooks
    │   ├── Erased                  409 erased  (the resident's data was erased: nothing of it is sent again)
    │   ├── LinkExpired             410 link-expired  (a signed attachment link past its expiry)
    │   ├── BodyTooLarge            413 body-too-large
    │   ├── UnsupportedMediaType    415 unsupported-media-type
    │   ├── ValidationFailed        422 validation-failed  (`errors`: every failing field's pointer)
    │   ├── TooManyRequests         429 too-many-requests  (`Retry-After`, `RateLimit-*` headers)
    │   ├── ServiceUnavailable      503 service-unavailable
    │   └── InternalError           500 internal-error  (only the app's last-resort handler uses it)
    └── DeliveryError               one delivery attempt did not succeed; `reason` is safe to show staff
        ├── TransientError          the back office may take it later: RetryAt, then Park after the last attempt
        └── PermanentError          sending it again cannot succeed: Park at once
            ├── MappingError        the mapping could not make a record from the payload
            └── OutboundRefused     the hub will not call that address (allow-list, metadata, link-local)

The worker decides retry or park by the class alone (hub.delivery.retry `decide`); the API turns a
RequestError into its problem details, and any other exception into a logged 500.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The configuration cannot be used; the message names the file and, where known, the line."""


class UnknownKey(ConfigError):
    """Sealed data that no key of HUB_ENCRYPTION_KEYS opens: retrying cannot help, a key is missing."""


class SchemaError(HubError):
    """A form's JSON Schema does not compile."""


class SessionError(HubError):
    """A token that is not a valid hub session."""


class SessionExpired(SessionError):
    """A hub session whose time is up."""


# -- requests ---------------------------------------------------------------------------------


class RequestError(HubError):
    """A request the hub refuses, answered as problem details: `detail` says what to change,
    `errors` lists failing fields ({"pointer", "detail"}), `extra` adds members such as `limit`."""

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    # what the problem type means, served at /problems/<kind>
    meaning: ClassVar[str] = "The request is not valid."

    def __init__(
        self,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(RequestError):
    pass


class MalformedJson(RequestError):
    kind = "malformed-json"
    title = "The body is not valid JSON"
    meaning = "The request body could not be read as JSON."


class Unauthorized(RequestError):
    status = 401
    kind = "unauthorized"
    title = "An API key is needed"
    meaning = "Send the front-end client's API key as `Authorization: Bearer <key>`."


class InvalidSignature(RequestError):
    status = 401
    kind = "invalid-signature"
    title = "The request is not signed as agreed"
    meaning = (
        "Sign the raw body with the connector's shared secret: Hub-Signature: t=<unix seconds>,"
        "v1=<hex HMAC-SHA256 of \"<t>.<body>\">, within 5 minutes of the hub's clock."
    )


class Forbidden(RequestError):
    status = 403
    kind = "forbidden"
    title = "Not allowed"
    meaning = "This client is not allowed to do this."


class BadLinkSignature(RequestError):
    status = 403
    kind = "bad-link-signature"
    title = "The link is not signed by the hub"
    meaning = "An attachment's content link must carry the expiry and signature the hub gave it, unchanged."


class NotFound(RequestError):
    status = 404
    kind = "not-found"
    title = "Not found"
    meaning = "There is nothing here for this client."


class MethodNotAllowed(RequestError):
    status = 405
    kind = "method-not-allowed"
    title = "Method not allowed"
    meaning = "This address does not take that HTTP method; the Allow header lists those it takes."


class IdempotencyConflict(RequestError):
    """The Idempotency-Key was used before with a different body; `reference` is the first one's."""

    status = 409
    kind = "idempotency-conflict"
    title = "Idempotency-Key reused with a different body"
    meaning = "This Idempotency-Key was already used for a different submission."

    def __init__(self, reference: str, detail: str = "This Idempotency-Key was already used with a different body.") -> None:
        super().__init__(detail, reference=reference)
        self.reference = reference


class Conflict(RequestError):
    status = 409
    kind = "conflict"
    title = "Already exists"
    meaning = "Something of that name exists already."


class TooManyWebhooks(RequestError):
    status = 409
    kind = "too-many-webhooks"
    title = "Too many webhooks"
    meaning = "A client may register 10 webhooks; delete one first."


class Erased(RequestError):
    status = 409
    kind = "erased"
    title = "Erased at the resident's request"
    meaning = "The resident's personal data was erased; the hub sends nothing of that submission again."


class LinkExpired(RequestError):
    status = 410
    kind = "link-expired"
    title = "The link has expired"
    meaning = "An attachment's content link works until the expiry the hub signed into it; ask for the record again."


class BodyTooLarge(RequestError):
    status = 413
    kind = "body-too-large"
    title = "The body is too large"
    meaning = "The request body is larger than this hub accepts."


class UnsupportedMediaType(RequestError):
    status = 415
    kind = "unsupported-media-type"
    title = "Send JSON"
    meaning = "Submissions must be sent with Content-Type: application/json."


class ValidationFailed(RequestError):
    status = 422
    kind = "validation-failed"
    title = "Your submission has errors"
    meaning = "One or more fields are missing or not valid. Each is listed in `errors` with a JSON pointer to the field."


class TooManyRequests(RequestError):
    status = 429
    kind = "too-many-requests"
    title = "Too many requests"
    meaning = (
        "A rate limit, a daily quota or the limit on failed sign-ins was reached; wait the seconds "
        "`Retry-After` gives before sending again."
    )


class ServiceUnavailable(RequestError):
    status = 503
    kind = "service-unavailable"
    title = "Temporarily unavailable"
    meaning = "The hub cannot store submissions just now. Nothing was stored; try again shortly."


class InternalError(RequestError):
    status = 500
    kind = "internal-error"
    title = "Something went wrong"
    meaning = "The hub failed to handle this request. It has been logged."


def request_errors() -> dict[str, type[RequestError]]:
    """Every problem type by its kind (each class once: a kind names one class)."""
    found: dict[str, type[RequestError]] = {}
    pending: list[type[RequestError]] = [RequestError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.kind, cls)
        pending.extend(cls.__subclasses__())
    return found


# -- deliveries -------------------------------------------------------------------------------


class DeliveryError(HubError):
    """A delivery attempt failed; `reason` is safe to show staff and the front end (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    """The back office may accept the same record later: retry with backoff."""


class PermanentError(DeliveryError):
    """Sending the same record again cannot succeed: park with the reason."""


class MappingError(PermanentError):
    """The mapping could not produce a record from the payload."""


class OutboundRefused(PermanentError):
    """The hub will not call this address: not allow-listed, or link-local / metadata."""
