"""The simulated back offices the demo starts, one module each.

Each module listed in BACK_OFFICES has `demo(env) -> list[DemoBackOffice]`: it starts its
servers on loopback, puts their URLs and credentials into `env` (the variables the
connectors in `config/` name), and returns handles the demo reports on and stops.
"""

from __future__ import annotations

import importlib
from typing import Protocol

BACK_OFFICES = [
    "simulators.crm",
    "simulators.mail",
    "simulators.backoffice_amqp",
    "simulators.revenues",
    "simulators.waste",
    "simulators.open311",
    "simulators.planning",
    "simulators.pay",
]


class DemoBackOffice(Protocol):
    name: str
    url: str

    def summary(self) -> str:
        """One line: what this back office received."""

    def stop(self) -> None: ...


def start_all(env: dict[str, str]) -> list[DemoBackOffice]:
    started: list[DemoBackOffice] = []
    try:
        for module_name in BACK_OFFICES:
            started.extend(importlib.import_module(module_name).demo(env))
    except BaseException:
        for office in started:
            office.stop()
        raise
    return started
