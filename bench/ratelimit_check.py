"""What a rate-limit check costs on the fast intake path, and how fast the hub refuses at the limit.

    .venv/bin/python -m bench.ratelimit_check

1. µs per `RateLimits.check_client` (the client's bucket, its tenant's bucket and, when set, the
   tenant's daily quota), as the fast intake path calls it for every submission;
2. 2,000 requests from one key against a limit of 100/minute through the ASGI app (the embedded
   hub's runtime, in process): how many were served and refused, and refusals per second.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from hub.api.app import create_app
from hub.api.ratelimit import RateLimits
from hub.config.settings import Settings
from tests.support.embedded import embedded_hub


def per_check(limits: RateLimits, client: object, rounds: int = 200_000) -> float:
    check = limits.check_client
    start = time.perf_counter()
    for _ in range(rounds):
        check(client)  # type: ignore[arg-type]
    return (time.perf_counter() - start) / rounds * 1e6


async def drive(app: object, key: str, body: object) -> tuple[dict[int, int], float, float]:
    """2,000 POSTs one after another straight into the ASGI app (no network, no test client)."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {key}"}
    counts: dict[int, int] = {}
    refusing = 0.0
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as api:
        start = time.perf_counter()
        for _ in range(2000):
            sent = time.perf_counter()
            status = (await api.post("/v1/forms/missed-bin-collection/submissions", json=body, headers=headers)).status_code
            if status == 429:
                refusing += time.perf_counter() - sent
            counts[status] = counts.get(status, 0) + 1
        return counts, refusing, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, embedded_hub(Path(tmp)) as hub:
        config = hub.runtime.config
        client = config.clients["demo-portal"].model_copy(update={"rate_limit": "1000000/second"})
        roomy = hub.runtime.settings.model_copy(update={"tenant_rate_limit": "1000000/second"})
        plain = per_check(RateLimits(roomy, config), client)
        config.tenants["eastmoor"] = config.tenants["eastmoor"].model_copy(update={"daily_quota": 10**9})
        with_quota = per_check(RateLimits(roomy, config), client)

        config.clients["demo-portal"] = config.clients["demo-portal"].model_copy(update={"rate_limit": "100/minute"})
        app = create_app(hub.runtime, hub.relay, manage_relay=False)
        app.state.limits = RateLimits(hub.runtime.settings, config)
        body = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
        counts, refusing, total = asyncio.run(drive(app, hub.key, body))
    print(json.dumps({
        "us_per_check_client_and_tenant": round(plain, 2),
        "us_per_check_with_daily_quota": round(with_quota, 2),
        "requests": 2000, "limit": "100/minute", "by_status": counts, "seconds": round(total, 2),
        "refused_per_second_while_refusing": round(counts.get(429, 0) / refusing) if refusing else None,
    }))


if __name__ == "__main__":
    main()
