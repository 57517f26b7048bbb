"""Counting what a fault test did to the back office: per submission, lost, duplicated effects,
and every delivery delivered or parked with a reason."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.processes import HubProcesses


@dataclass
class Tally:
    accepted: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post_stream(self, stack: HubProcesses, payload: dict[str, Any], count: int, rate: float | None = None, threads: int = 8) -> None:
        """Posts `count` submissions (at about `rate` per second if given), keeping the references
        of the accepted ones and counting refusals by status."""
        clients = [stack.client(i) for i in range(len(stack.api_urls))]
        started = time.monotonic()

        def post(n: int) -> None:
            if rate:
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
            try:
                response = clients[n % len(clients)].post("/v1/forms/missed-bin-collection/submissions", json=payload)
            except httpx.HTTPError:
                with self.lock:
                    self.refused[0] = self.refused.get(0, 0) + 1
                return
            with self.lock:
                if response.status_code == 202:
                    self.accepted.append(response.json()["reference"])
                else:
                    assert response.headers["content-type"] == "application/problem+json", response.text
                    self.refused[response.status_code] = self.refused.get(response.status_code, 0) + 1

        try:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(post, range(count)))
        finally:
            for client in clients:
                client.close()


def assert_nothing_lost_or_doubled(stack: HubProcesses, references: list[str], timeout: float = 180.0) -> dict[str, int]:
    """Waits for every delivery to settle, then checks the CRM's cases submission by submission:
    each accepted submission is one case, or a delivery parked with its reason; none is two."""
    settled = stack.wait_settled(references, timeout=timeout)
    cases = stack.crm.cases()
    keys = [case["client_unique_identifier"] for case in cases]
    by_key = {case["client_unique_identifier"]: case for case in cases}
    states: dict[str, int] = {}
    lost: list[str] = []
    for reference in references:
        [delivery] = settled[reference]["deliveries"]
        states[delivery["state"]] = states.get(delivery["state"], 0) + 1
        case = by_key.get(f"{reference}/crm")
        if delivery["state"] == "delivered":
            if case is None or delivery["external_reference"] != case["reference"]:
                lost.append(reference)
        elif not delivery["last_error"]:
            lost.append(reference)  # parked without a reason is as good as lost
    stats = stack.crm.stats()
    counts = {
        "submitted": len(references),
        "lost": len(lost),
        "duplicated_effects": len(keys) - len(set(keys)) + len(set(keys) - {f"{r}/crm" for r in references}),
        "crm_cases": stats["cases"],
        "crm_requests": stats["requests"],
        "redelivered_and_absorbed": stats["duplicates"],
        **{f"deliveries_{state}": n for state, n in sorted(states.items())},
    }
    print("fault test counts:", counts)
    assert counts["lost"] == 0, lost[:5]
    assert counts["duplicated_effects"] == 0
    return counts
