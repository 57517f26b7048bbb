"""Residents rate a completed request through their portal (`POST /v1/submissions/{reference}/rating`),
and staff read the figures per form (`GET /v1/admin/ratings`).

One rating per submission: a second is 409 (a rating is not edited). Only once a back office has
reported the submission in a final status (closed, completed, resolved...): before that, 409. The
comment may hold personal data: sealed at rest, never logged, erased with the resident's data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ClientDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.api.routes.admin import StaffDep, _require, _scope
from hub.errors import Conflict, NotFound
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import ratings as store

log = get_logger("hub.ratings")
router = APIRouter(tags=["ratings"])


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, description="1 (very poor) to 5 (very good)")
    comment: str | None = Field(default=None, max_length=1000)


def _rate(runtime: Runtime, tenant: str, reference: str, rating: Rating) -> dict[str, Any]:
    found = store.find(runtime.engine, tenant, reference)
    if found is None:
        raise NotFound(f"No submission {reference!r} for this client.")
    if not found.completed:
        raise Conflict(f"Submission {reference} is not completed yet: it can be rated once the council has closed it.")
    sealed = runtime.sealer.seal(rating.comment) if rating.comment else None
    if found.rated or not store.add(runtime.engine, tenant, found, rating.score, sealed, datetime.now(UTC)):
        raise Conflict(f"Submission {reference} has already been rated; a rating cannot be changed.")
    log.info("rating_recorded", reference=reference, score=rating.score)
    return {"reference": reference, "score": rating.score}


@router.post("/v1/submissions/{reference}/rating", status_code=201, responses=problem_responses(400, 401, 404, 409, 422, 429, 503))
async def rate(reference: str, rating: Rating, runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    return await run_in_threadpool(_rate, runtime, client.tenant, reference, rating)


@router.get("/v1/admin/ratings", responses=problem_responses(401, 403, 422, 429, 503))
async def rating_figures(runtime: RuntimeDep, staff: StaffDep,
                         form: Annotated[str | None, Query(max_length=128)] = None) -> list[dict[str, Any]]:
    """Per form, of this member of staff's tenant: count, mean and how many of each score."""
    _require(staff, "viewer")
    return await run_in_threadpool(store.figures, runtime.engine, _scope(staff), form)
