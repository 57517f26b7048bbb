"""Edit then replay for staff with a token: the same service as the console's correction pages
(hub/delivery/correction.py). `dry_run` answers with the diff and the exact body, storing nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RelayDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.api.routes.admin import StaffDep, _require, _scope
from hub.delivery import correction
from hub.errors import Conflict, Erased, NotFound, ValidationFailed

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403, 422, 429, 503))


class CorrectionRequest(BaseModel):
    """The delivery's answers as they should be sent (the whole answers, not a patch), and why."""

    model_config = ConfigDict(extra="forbid")

    answers: dict[str, Any] = Field(description="The corrected answers, validated against the form's JSON Schema")
    reason: str = Field(min_length=1, max_length=correction.REASON_MAX, description="Why; kept in the audit log")
    dry_run: StrictBool = False


def _problems(checked: correction.Checked) -> list[dict[str, str]]:
    # answers' pointers are given as pointers into the request body
    return [{"pointer": e["pointer"] if e["pointer"] == "/reason" else "/answers" + e["pointer"], "detail": e["detail"]}
            for e in checked.errors]


@router.post("/deliveries/{delivery_id}/corrections", responses=problem_responses(400, 404, 409))
async def correct_delivery(
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: CorrectionRequest, runtime: RuntimeDep, relay: RelayDep,
    staff: StaffDep,
) -> dict[str, Any]:
    """Corrects a parked delivery's answers and replays it (operator). The submission's own
    answers stay; the correction is stored sealed and audited (`delivery.correct`) with who, why
    and which fields changed. With `dry_run`: the diff and the exact body only."""
    found = await run_in_threadpool(correction.find, runtime, delivery_id, _scope(staff))
    if found is None:
        raise NotFound(f"No delivery {delivery_id} for this member of staff.")
    _require(staff, "operator")
    try:
        if body.dry_run:
            checked, done = await run_in_threadpool(correction.check, runtime, found, body.answers, body.reason), None
        else:
            checked, done = await run_in_threadpool(correction.confirm, runtime, found, body.answers, body.reason, f"staff:{staff.id}")
    except correction.NotCorrectable as error:
        raise (Erased if error.erased else Conflict)(error.why) from None
    if checked.errors:
        raise ValidationFailed("The corrected answers cannot be sent: each problem is listed in `errors`.", errors=_problems(checked))
    if done is not None and relay is not None:
        relay.wake()
    preview = checked.preview
    return {
        "dry_run": body.dry_run,
        "delivery_id": delivery_id,
        "reference": found.reference,
        "connector": found.connector,
        "changes": [c.as_dict() for c in checked.changes],
        "body": {"destination": preview.target, "protocol": preview.protocol, "media_type": preview.content_type, "body": preview.body} if preview else None,
        "replayed": done,
    }
