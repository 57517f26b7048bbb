"""RFC 9457 problem details: every HTTP error the hub returns has this shape.

A `hub.errors.RequestError` is raised anywhere in a request; the app turns it, and every other
error, into `application/problem+json` with a `type` that names the kind of problem (each kind is
one class of the error tree, and is served as a short explanation at /problems/<kind>).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import metrics
from hub.errors import InternalError, NotFound, RequestError, ServiceUnavailable, ValidationFailed, request_errors
from hub.logs import get_logger

log = get_logger("hub.api")
MEDIA_TYPE = "application/problem+json"

# kind -> its class of the error tree (title and meaning are served at /problems/<kind>)
KINDS = request_errors()


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
            "description": KINDS[_STATUS_KINDS[status]].title if status in _STATUS_KINDS else "Error",
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


def _instance(request: Request) -> str:
    """The path the problem is about; where the path names a resident (the portal's `sub`), the
    route's template instead, so the subject is not echoed into the portal's own logs."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str) and "{subject}" in template:
        return template
    return request.url.path


def problem_response(request: Request, problem: RequestError) -> JSONResponse:
    metrics.PROBLEMS.labels(str(problem.status)).inc()
    body: dict[str, Any] = {
        "type": f"/problems/{problem.kind}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": _instance(request),
        **problem.extra,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers)


def install(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(RequestError)
    async def _problem(request: Request, exc: RequestError) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (an unknown path, a method a route does not take)
        kind = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}
        cls = KINDS[kind.get(exc.status_code, "bad-request")]
        return problem_response(request, cls(str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"pointer": "/" + "/".join(str(p) for p in e.get("loc", ())), "detail": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        return problem_response(request, ValidationFailed("The request is not valid.", errors))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database_unavailable", error=type(exc.orig).__name__ if exc.orig else "OperationalError")
        return problem_response(
            request,
            ServiceUnavailable(ServiceUnavailable.meaning, headers={"Retry-After": "5"}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(request, InternalError(InternalError.meaning))

    @app.get("/problems/{kind}", include_in_schema=False)
    async def _describe(kind: str) -> PlainTextResponse:
        if kind not in KINDS:
            raise NotFound(f"No problem type {kind!r}.")
        return PlainTextResponse(f"{KINDS[kind].title}\n\n{KINDS[kind].meaning}\n")
