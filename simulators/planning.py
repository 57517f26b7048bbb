"""A runnable fake council planning back office that takes Open Digital Planning (ODP) JSON over REST.

Applications are validated against the real ODP schema and public comments against its PublicComment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema_rs
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.config.bundled import folder
from simulators.control import (
    DemoServer,
    FailurePlan,
    FailureSwitch,
    add_control_routes,
)

# the published ODP schemas, as the hub ships them in standards/
ODP_DIR = folder("standards") / "odp-planning"
# Applications already in consultation when the simulator starts, so comments have something to land on.
SEEDED = {"26/00412/HOUS": "pp.full.householder", "26/00587/PA14J": "pa.part14.classJ"}
_SUFFIX = {"pp.full.householder": "HOUS", "pp": "FUL", "ldc": "LDC", "pa": "PA", "listed": "LBC", "landDrainageConsent": "LDC"}
_MAX_ERRORS = 50


def _suffix(application_type: str) -> str:
    for prefix in sorted(_SUFFIX, key=len, reverse=True):
        if application_type == prefix or application_type.startswith(prefix + "."):
            return _SUFFIX[prefix]
    return "APP"


class PlanningState:
    """Applications, comments and the failure plan, behind one lock."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self._lock = threading.Lock()
        self.failures = FailureSwitch(FailurePlan(count=0))
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._applications: dict[str, dict[str, Any]] = {
                ref: {"reference": ref, "type": kind, "application": None, "comments": []} for ref, kind in SEEDED.items()
            }
            self._by_key: dict[str, str] = {}  # Idempotency-Key -> application reference or comment id
            self._duplicates = self._rejected = 0
        self.failures.reset()

    def arm(self, plan: FailurePlan) -> None:
        self.failures.arm(plan)

    def rejected(self) -> None:
        with self._lock:
            self._rejected += 1

    def add_application(self, application: dict[str, Any], key: str | None) -> tuple[str, bool]:
        """The new application's reference, or the earlier one for a repeated key (and False)."""
        with self._lock:
            if key is not None and key in self._by_key:
                self._duplicates += 1
                return self._by_key[key], False
            kind = str(application["data"]["application"]["type"]["value"])
            year = datetime.now(UTC).strftime("%y")
            reference = f"{year}/{len(self._applications) + 1:05d}/{_suffix(kind)}"
            self._applications[reference] = {"reference": reference, "type": kind, "application": application, "comments": []}
            if key is not None:
                self._by_key[key] = reference
            return reference, True

    def add_comment(self, reference: str, comment: dict[str, Any], key: str | None) -> tuple[str, bool] | None:
        """The comment's id (new or earlier for a repeated key), or None when there is no such application."""
        with self._lock:
            found = self._applications.get(reference)
            if found is None:
                return None
            if key is not None and key in self._by_key:
                self._duplicates += 1
                return self._by_key[key], False
            comment_id = f"{reference}/C{len(found['comments']) + 1:03d}"
            found["comments"].append({"id": comment_id, **comment})
            if key is not None:
                self._by_key[key] = comment_id
            return comment_id, True

    def application(self, reference: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._applications.get(reference)
            return json.loads(json.dumps(found)) if found is not None else None

    def applications(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._applications.values() if a["application"] is not None]

    def comments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"applicationReference": a["reference"], **c} for a in self._applications.values() for c in a["comments"]]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "applications": sum(1 for a in self._applications.values() if a["application"] is not None),
                "comments": sum(len(a["comments"]) for a in self._applications.values()),
                "requests": self.failures.requests,
                "duplicates": self._duplicates,
                "rejected": self._rejected,
            }

    def authorised(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(credentials.encode(), self.token.encode())


def odp_validators(odp_dir: Path = ODP_DIR) -> tuple[Any, Any]:
    """Validators for an ODP application and an ODP public comment, read from the published schemas."""
    application = (odp_dir / "schemas" / "application.json").resolve().as_uri()
    post_submission = (odp_dir / "schemas" / "postSubmissionApplication.json").resolve().as_uri()
    return (
        jsonschema_rs.validator_for({"$ref": application}, validate_formats=True),
        jsonschema_rs.validator_for({"$ref": f"{post_submission}#/definitions/PublicComment"}, validate_formats=True),
    )


def _schema_errors(validator: Any, document: Any) -> list[dict[str, str]]:
    errors = []
    for error in validator.iter_errors(document):
        pointer = "".join(f"/{part}" for part in error.instance_path)
        errors.append({"pointer": pointer, "message": error.message[:300]})
        if len(errors) >= _MAX_ERRORS:
            break
    return errors


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(state: PlanningState | None = None, odp_dir: Path = ODP_DIR) -> FastAPI:
    planning = state if state is not None else PlanningState()
    application_validator, comment_validator = odp_validators(odp_dir)
    app = FastAPI(title="Planning back-office simulator (Open Digital Planning)")
    app.state.planning = planning

    async def admitted(request: Request) -> JSONResponse | Any:
        """The JSON body, or the answer that refuses the request (auth, injected failure, bad JSON)."""
        if not planning.authorised(request.headers.get("authorization")):
            return _problem(401, "Not authorised")
        failure = planning.failures.take()
        if failure is not None and failure.mode == "status":
            return _problem(failure.status, f"Simulated failure ({failure.status})")
        if failure is not None:
            await asyncio.sleep(failure.seconds)
            return _problem(504, "Simulated timeout")
        try:
            return json.loads(await request.body())
        except ValueError:
            return _problem(400, "The body is not valid JSON")

    @app.post("/api/applications")
    async def submit_application(request: Request) -> JSONResponse:
        body = await admitted(request)
        if isinstance(body, JSONResponse):
            return body
        if errors := _schema_errors(application_validator, body):
            planning.rejected()
            return _problem(400, "The application does not follow the Open Digital Planning schema", errors=errors)
        reference, created = planning.add_application(body, request.headers.get("idempotency-key"))
        answer = {"reference": reference, "status": "received"}
        return JSONResponse(answer, status_code=201 if created else 200)

    async def comment_on(reference: str, comment: Any, request: Request) -> JSONResponse:
        if errors := _schema_errors(comment_validator, comment):
            planning.rejected()
            return _problem(400, "The comment does not follow the Open Digital Planning PublicComment schema", errors=errors)
        added = planning.add_comment(reference, comment, request.headers.get("idempotency-key"))
        if added is None:
            planning.rejected()
            return _problem(404, f"There is no application {reference}")
        comment_id, created = added
        answer = {"id": comment_id, "applicationReference": reference, "status": "received"}
        return JSONResponse(answer, status_code=201 if created else 200)

    @app.post("/api/applications/{reference:path}/comments")
    async def submit_comment(reference: str, request: Request) -> JSONResponse:
        body = await admitted(request)
        return body if isinstance(body, JSONResponse) else await comment_on(reference, body, request)

    @app.post("/api/comments")
    async def submit_comment_with_reference(request: Request) -> JSONResponse:
        """The same, for senders that post to one fixed URL: {"applicationReference", "comment"}."""
        body = await admitted(request)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict) or not isinstance(body.get("applicationReference"), str) or "comment" not in body:
            planning.rejected()
            return _problem(400, "Send {\"applicationReference\": ..., \"comment\": {ODP PublicComment}}")
        return await comment_on(body["applicationReference"], body["comment"], request)

    @app.get("/api/applications/{reference:path}")
    async def application_status(reference: str) -> JSONResponse:
        found = planning.application(reference)
        if found is None:
            return _problem(404, f"There is no application {reference}")
        counts = {"objection": 0, "neutral": 0, "supportive": 0}
        for comment in found["comments"]:
            counts[comment["sentiment"]] = counts.get(comment["sentiment"], 0) + 1
        # the summary has the shape of ODP's PublicCommentSummary
        summary = {"totalComments": len(found["comments"]), "sentiment": counts}
        return JSONResponse({"reference": reference, "type": found["type"], "status": "undetermined", "publicComments": summary})

    listings = {"applications": planning.applications, "comments": planning.comments}
    add_control_routes(app, FailurePlan, planning.arm, planning.stats, planning.reset, listings)
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # only the runnable entry point needs a server

    parser = argparse.ArgumentParser(prog="python -m simulators.planning", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8105)
    parser.add_argument("--token", default=None, help="require Authorization: Bearer <token>")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(PlanningState(token=args.token)), host=args.host, port=args.port, log_level="warning")


def _summary(state: PlanningState) -> str:
    stats = state.stats()
    return (
        f"{stats['applications']} application(s) and {stats['comments']} comment(s) from {stats['requests']} "
        f"request(s), {stats['duplicates']} duplicate(s) absorbed, {stats['rejected']} rejected"
    )


def demo(env: dict[str, str]) -> list[DemoServer]:
    """The council's planning system: applications and public comments in ODP JSON."""
    token = env.setdefault("PLANNING_API_TOKEN", secrets.token_urlsafe(16))
    state = PlanningState(token=token)
    office = DemoServer("planning", create_app(state), partial(_summary, state))
    env["PLANNING_URL"] = office.url
    return [office]


if __name__ == "__main__":
    main()
