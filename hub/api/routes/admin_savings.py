"""GET /v1/admin/savings: the console's channel-shift savings as JSON (hub/console/savings.py),
scoped to the staff member's tenant (a platform admin sees every tenant)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RuntimeDep
from hub.api.problems import problem_responses
from hub.api.routes.admin import StaffDep, _require, _scope
from hub.console.savings import savings

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403, 422, 429, 503))
MONTH = r"^(19|20)\d{2}-(0[1-9]|1[0-2])$"  # 1900-01 to 2099-12: the months a hub can have seen


@router.get("/savings", summary="Channel-shift savings per tenant, form and month (UTC)")
async def get_savings(
    runtime: RuntimeDep,
    staff: StaffDep,
    month_from: Annotated[str | None, Query(alias="from", pattern=MONTH, description="first month, YYYY-MM")] = None,
    month_to: Annotated[str | None, Query(alias="to", pattern=MONTH, description="last month, YYYY-MM")] = None,
    form: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    _require(staff, "viewer")
    found = await run_in_threadpool(savings, runtime.engine, runtime.config, _scope(staff), month_from, month_to, form)
    costs = runtime.config.unit_costs
    return {"unit_costs_gbp": costs.model_dump(), "source": runtime.config.cost_source,
            "items": [x.as_dict() for x in found]}
