"""The peer's intake: FastAPI, a bearer key, python-jsonschema validation, then a Celery task
published with confirms; answers 202 with a reference, like the hub's intake (but stores nothing).
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from fastapi.responses import JSONResponse

from bench.peer.schema import peer_validator
from bench.peer.tasks import deliver

app = FastAPI(title="Celery peer")
VALIDATOR = peer_validator()
API_KEY = os.environ.get("PEER_API_KEY", "")
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# a plain `def` endpoint: FastAPI runs it in its thread pool, so Celery's blocking publish
# (it waits for the broker's confirm) does not stall the event loop
@app.post("/v1/forms/missed-bin-collection/submissions", status_code=202)
def submit(payload: Annotated[dict[str, Any], Body()], authorization: Annotated[str, Header()] = "") -> JSONResponse:
    if not API_KEY or not hmac.compare_digest(authorization, f"Bearer {API_KEY}"):
        return JSONResponse({"title": "Unauthorized"}, status_code=401)
    errors = [{"pointer": "/" + "/".join(map(str, e.absolute_path)), "detail": e.message}
              for e in VALIDATOR.iter_errors(payload)]
    if errors:
        return JSONResponse({"title": "Validation failed", "errors": errors}, status_code=422)
    reference = "PEER-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))
    deliver.apply_async((reference, payload))
    return JSONResponse({"reference": reference, "status_url": f"/v1/submissions/{reference}"}, status_code=202)
