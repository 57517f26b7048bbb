"""The console's Savings page and its CSV (hub/console/savings.py's figures): month and form
filters by GET, an accessible server-rendered SVG bar chart with the data table beside it."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub.console.savings import Saving, savings
from hub.console.session import RuntimeDep, SignedDep, router

MONTH = re.compile(r"^(19|20)\d{2}-(0[1-9]|1[0-2])$")  # 1900-01 to 2099-12, as GET /v1/admin/savings
HEADERS = ("Tenant", "Form", "Month", "Straight into a back office", "Channel replaced",
           "Re-keying minutes avoided", "Money saved (£)")
CHART_WIDTH, BAR_HEIGHT, LABEL_WIDTH = 480, 52, 0


def _filters(request: Request, forms: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    given = {k: request.query_params.get(k, "").strip()[:32] for k in ("from", "to", "form")}
    errors = []
    for key, label in (("from", "Month from"), ("to", "Month to")):
        if given[key] and not MONTH.match(given[key]):
            errors.append({"field": key, "text": f"{label} must be a month like 2025-03"})
    if given["from"] and given["to"] and not errors and given["to"] < given["from"]:
        errors.append({"field": "to", "text": "Month to must be the same as or after month from"})
    if given["form"] and given["form"] not in forms:
        errors.append({"field": "form", "text": "Choose a form from the list"})
    return given, errors


def _row(x: Saving) -> list[str]:
    return [x.tenant, x.form, x.month, str(x.straight_in), x.replaces.replace("_", " "),
            f"{x.rekeying_minutes:g}", f"{x.money_saved:.2f}"]


def _chart(found: list[Saving]) -> dict[str, Any]:
    """Bars of money saved per row, sized on the server (SVG presentation attributes only)."""
    top = max((x.money_saved for x in found), default=0.0) or 1.0
    room = CHART_WIDTH - LABEL_WIDTH - 110
    bars = [{"y": i * BAR_HEIGHT, "width": max(1, round(x.money_saved / top * room)),
             "label": f"{x.tenant} {x.form} {x.month}", "value": f"£{x.money_saved:,.2f}"} for i, x in enumerate(found)]
    return {"bars": bars, "width": CHART_WIDTH, "height": max(1, len(bars)) * BAR_HEIGHT, "label_width": LABEL_WIDTH}


async def _found(request: Request, runtime: Any, signed: Any) -> tuple[dict[str, str], list[dict[str, str]], list[Saving]]:
    signed.require("viewer")
    given, errors = _filters(request, runtime.forms.ids())
    found: list[Saving] = []
    if not errors:
        found = await run_in_threadpool(savings, runtime.engine, runtime.config, signed.scope,
                                        given["from"] or None, given["to"] or None, given["form"] or None)
    return given, errors, found


@router.get("/savings")
async def savings_page(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Channel-shift savings per tenant, form and month, as a chart and a table."""
    given, errors, found = await _found(request, runtime, signed)
    kept = {k: v for k, v in given.items() if v and not errors}
    return signed.page(request, "savings.html", status=400 if errors else 200, given=given, errors=errors,
                       rows=[_row(x) for x in found], headers=HEADERS, chart=_chart(found), forms=runtime.forms.ids(),
                       costs=runtime.config.unit_costs, source=runtime.config.cost_source, kept=kept,
                       total=f"{sum(x.money_saved for x in found):,.2f}",
                       minutes=f"{sum(x.rekeying_minutes for x in found):g}")


def neutralised(cell: str) -> str:
    """A spreadsheet would run a cell starting = + - @ TAB or CR as a formula: quote it."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


@router.get("/savings.csv")
async def savings_csv(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The table of the Savings page as CSV, formula injection neutralised."""
    given, errors, found = await _found(request, runtime, signed)
    if errors:
        return signed.page(request, "savings.html", status=400, given=given, errors=errors, rows=[], headers=HEADERS,
                           chart=_chart([]), forms=runtime.forms.ids(), costs=runtime.config.unit_costs,
                           source=runtime.config.cost_source, kept={}, total="0.00", minutes="0")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    for x in found:
        writer.writerow([neutralised(cell) for cell in _row(x)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="savings.csv"'})
