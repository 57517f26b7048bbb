"""The parts every HTTP back-office simulator shares: a failure switch armed over `/_control/fail`,
the `/_control/` and `/healthz` routes, and the handle the demo starts each simulator behind.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field


class CountedPlan(BaseModel):
    """A failure plan: what the next `count` requests do instead of succeeding (each simulator adds modes)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=0)


class FailurePlan(CountedPlan):
    """What the next `count` requests to an HTTP (REST) simulator do instead of succeeding."""

    mode: Literal["status", "timeout", "hang"] = "status"
    status: int = Field(default=503, ge=400, le=599)
    seconds: float = Field(default=5.0, ge=0)


PlanT = TypeVar("PlanT", bound=CountedPlan)


class FailureSwitch(Generic[PlanT]):
    """The armed plan and the count of requests behind one lock: uvicorn serves beside the threads that arm it."""

    def __init__(self, idle: PlanT) -> None:
        self._idle = idle
        self._lock = threading.Lock()
        self.reset()

    def arm(self, plan: PlanT) -> None:
        with self._lock:
            self._plan = plan

    def reset(self) -> None:
        with self._lock:
            self._plan, self.requests = self._idle, 0

    def take(self, spend: bool = True) -> PlanT | None:
        """Count a request and give the plan it must follow, using one of its count; None once it is spent.

        A request refused before it is served (`spend=False`) is counted but leaves the plan for the next.
        """
        with self._lock:
            self.requests += 1
            if not spend or self._plan.count <= 0:
                return None
            self._plan = self._plan.model_copy(update={"count": self._plan.count - 1})
            return self._plan


def add_control_routes(
    app: FastAPI,
    plan_model: type[CountedPlan],
    arm: Callable[[Any], None],
    stats: Callable[[], dict[str, Any]],
    reset: Callable[[], None],
    listings: dict[str, Callable[[], Any]],
) -> None:
    """`POST /_control/fail` (a `plan_model` body), `GET /_control/<name>` for each listing,
    `GET /_control/stats`, `POST /_control/reset` and `GET /healthz`."""

    async def fail(plan: Any) -> Any:
        arm(plan)
        return plan

    # FastAPI reads the body model from the signature, and each simulator has its own plan model
    parameter = inspect.Parameter("plan", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=plan_model)
    fail.__signature__ = inspect.Signature([parameter], return_annotation=plan_model)  # type: ignore[attr-defined]
    app.post("/_control/fail")(fail)

    for name, records in listings.items():
        app.get(f"/_control/{name}")(_listing(records))

    @app.get("/_control/stats")
    async def stats_route() -> dict[str, Any]:
        return stats()

    @app.post("/_control/reset")
    async def reset_route() -> dict[str, str]:
        reset()
        return {"result": "reset"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


def _listing(records: Callable[[], Any]) -> Callable[[], Any]:
    async def listed() -> Any:
        return jsonable_encoder(records())

    return listed


class DemoServer:
    """A simulator app the demo started on loopback; `summary()` says what it received, `stop()` stops it."""

    def __init__(self, name: str, app: FastAPI, summary: Callable[[], str], path: str = "") -> None:
        from hub.api.server_thread import ServerThread  # only the demo needs a server thread

        self._server = ServerThread(app).start()
        self.name, self.url, self._summary = name, self._server.url + path, summary

    def summary(self) -> str:
        return self._summary()

    def stop(self) -> None:
        self._server.stop()
