"""RFC 9457 problem details: every HTTP error the hub returns has this shape.

`Problem` is raised anywhere in a request; the app turns it, and every other error, into
`application/problem+json` with a `type` that names the kind of problem.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.logs import get_logger

log = get_logger("hub.api")
MEDIA_TYPE = "application/problem+json"

# slug -> (title, what it means for the caller); each is also served at /problems/<slug>
KINDS: dict[str, tuple[str, str]] = {
    "validation-failed": ("Your submission has errors", "One or more fields are missing or not valid. Each is listed in `errors` with a JSON pointer to the field."),
    "malformed-json": ("The body is not valid JSON", "The request body could not be read as JSON."),
    "unsupported-media-type": ("Send JSON", "Submissions must be sent with Content-Type: application/json."),
    "body-too-large": ("The body is too large", "The request body is larger than this hub accepts."),
    "unauthorized": ("An API key is needed", "Send the front-end client's API key as `Authorization: Bearer <key>`."),
    "forbidden": ("Not allowed", "This client is not allowed to do this."),
    "not-found": ("Not found", "There is nothing here for this client."),
    "idempotency-conflict": ("Idempotency-Key reused with a different body", "This Idempotency-Key was already used for a different submission."),
    "bad-request": ("Bad request", "The request is not valid."),
    "service-unavailable": ("Temporarily unavailable", "The hub cannot store submissions just now. Nothing was stored; try again shortly."),
    "internal-error": ("Something went wrong", "The hub failed to handle this request. It has been logged."),
    "invalid-signature": (
        "The request is not signed as agreed",
        "Sign the raw body with the connector's shared secret: Hub-Signature: t=<unix seconds>,"
        "v1=<hex HMAC-SHA256 of \"<t>.<body>\">, within 5 minutes of the hub's clock.",
    ),
    "too-many-webhooks": ("Too many webhooks", "A client may register 10 webhooks; delete one first."),
}


class ProblemDetails(BaseModel):
    """The body of every hub error, for the OpenAPI document; `limit` or `reference` may be added."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, str]] | None = None


_SCHEMA_REF = {"$ref": "#/components/schemas/ProblemDetails"}
# the status each error answers with, and the kind of problem it usually is
_STATUS_KINDS = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 409: "idempotency-conflict",
    413: "body-too-large", 415: "unsupported-media-type", 422: "validation-failed", 503: "service-unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring each status as problem details (the schema is added by `install`)."""
    return {
        status: {
            "description": KINDS[_STATUS_KINDS[status]][0] if status in _STATUS_KINDS else "Error",
            "content": {MEDIA_TYPE: {"schema": dict(_SCHEMA_REF)}},
        }
        for status in statuses
    }


def _document_problems(app: FastAPI) -> None:
    """Adds ProblemDetails to the document's components, and drops FastAPI's default 422
    (an HTTPValidationError in application/json), which the hub never sends: a route that can
    fail validation declares its own 422 as problem details."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if "ProblemDetails" not in schemas:
            schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    declared = operation.get("responses", {}).get("422", {})
                    if "HTTPValidationError" in str(declared.get("content", {})):
                        del operation["responses"]["422"]
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class Problem(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    title = KINDS.get(problem.kind, ("Error", ""))[0]
    body: dict[str, Any] = {
        "type": f"/problems/{problem.kind}",
        "title": title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers)


def install(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 403: "forbidden", 404: "not-found", 413: "body-too-large"}.get(exc.status_code, "bad-request")
        return problem_response(request, Problem(exc.status_code, kind, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"pointer": "/" + "/".join(str(p) for p in e.get("loc", ())), "detail": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        return problem_response(request, Problem(422, "validation-failed", "The request is not valid.", errors))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database_unavailable", error=type(exc.orig).__name__ if exc.orig else "OperationalError")
        return problem_response(
            request,
            Problem(503, "service-unavailable", KINDS["service-unavailable"][1], headers={"Retry-After": "5"}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(request, Problem(500, "internal-error", KINDS["internal-error"][1]))

    @app.get("/problems/{kind}", include_in_schema=False)
    async def _describe(kind: str) -> PlainTextResponse:
        if kind not in KINDS:
            raise Problem(404, "not-found", f"No problem type {kind!r}.")
        title, meaning = KINDS[kind]
        return PlainTextResponse(f"{title}\n\n{meaning}\n")
