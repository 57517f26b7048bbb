"""Where GOV.UK Pay sends the resident back: the hub asks GOV.UK Pay how the payment ended,
releases or cancels the submission's deliveries, and sends the resident on to the portal.

No API key: the resident's browser arrives here. The unguessable token in the path is the only
way to a payment, and it shows nothing but a redirect to the portal's page for that reference.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RelayDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.errors import NotFound
from hub.payments.service import Payments
from hub.store import payments as store

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.get("/return/{token}", status_code=303, responses=problem_responses(404, 429, 503), response_class=RedirectResponse)
async def payment_return(token: str, request: Request, runtime: RuntimeDep, relay: RelayDep) -> RedirectResponse:
    service = Payments.of(runtime)
    row = await run_in_threadpool(store.for_token, runtime.engine, token)
    fee = service.fee_for(row.tenant, row.form_id) if row is not None else None
    if row is None or fee is None:
        raise NotFound("There is no payment at this address.")
    await run_in_threadpool(store.returned, runtime.engine, row)
    if row.state in store.OPEN:
        outcome = await run_in_threadpool(service.refresh, row)
        if outcome == "success" and relay is not None:
            relay.wake()
    return RedirectResponse(fee.resident_return_url(row.reference), status_code=303)
