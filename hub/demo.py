"""`hub demo`: the whole hub in one process on its embedded default, with simulated back offices.

SQLite under `var/`, kombu's in-process transport, the CRM simulators on loopback. It posts every
sample of every form over HTTP, waits for the deliveries and prints what each back office received.
"""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.background import Periodic, jobs
from hub.config.settings import Settings
from hub.delivery.worker import Worker
from hub.demo_journeys import PAID_FORM, PHOTO_CONNECTOR, PHOTO_FORM, PhotoReport, post_photo_report, report_paid, report_photo
from hub.logs import configure
from hub.notifications.config import load_notification_config
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store import submissions as store
from hub.store.migrate import upgrade
from simulators import identity
from simulators import notify as notify_simulator
from simulators.catalogue import DemoBackOffice, start_all
from simulators.control import DemoServer


@dataclass
class Posted:
    form_id: str
    sample: str
    reference: str | None
    error: str | None = None


def _samples(schemas_dir: Path, forms: list[str]) -> list[tuple[str, str, Any]]:
    found = []
    for form_id in forms:
        for path in sorted((schemas_dir / form_id / "samples").glob("*.json")):
            found.append((form_id, path.stem, json.loads(path.read_text(encoding="utf-8"))))
    return found


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in rows]
    return "\n".join(out)


def console_sign_in(runtime: Runtime, api_port: int, idp_port: int = 0) -> identity.IdentityProvider | None:
    """Starts the demo's identity provider and points the hub's staff sign-in at it, unless a
    provider is configured already (HUB_OIDC_ISSUER). The console is then reached on localhost:
    the name browsers treat as a secure context for its `__Host-` cookie."""
    settings = runtime.settings
    if settings.oidc_issuer:
        return None
    hub_url = f"http://{identity.HOST}:{api_port}"
    person = identity.demo_person(runtime.config.staff)
    provider = identity.start(person, [f"{hub_url}/console/callback", f"{hub_url}/v1/auth/callback"], idp_port)
    settings.staff_auth = "both" if settings.staff_auth == "local" else settings.staff_auth
    settings.oidc_issuer, settings.oidc_client_id = provider.url, provider.client_id
    settings.oidc_client_secret = SecretStr(provider.client_secret)
    settings.public_url = hub_url
    return provider


class NotifyDemo(DemoServer):
    """The GOV.UK Notify simulator with the templates config/notifications/notifications.yaml names;
    what it sent is listed at `{url}/_control/notifications`."""

    def __init__(self, key: str) -> None:
        self.state = notify_simulator.NotifyState()
        self.state.add_key(key)
        for template in notify_simulator.DEMO_TEMPLATES:
            self.state.add_template(template)
        super().__init__("notify", notify_simulator.create_app(self.state), lambda: f"{len(self.state.sent())} message(s) sent")


def resident_messages(runtime: Runtime, environ: Mapping[str, str]) -> NotifyDemo | None:
    """Starts the Notify simulator and points the hub's residents' messages at it, unless a Notify
    key is configured already (HUB_NOTIFY_API_KEY). Call before `jobs(runtime)`: the sender reads
    the key when it is built."""
    if "HUB_NOTIFY_API_KEY" in environ or runtime.settings.notify_api_key is not None:
        return None
    key = notify_simulator.api_key("demo")
    server = NotifyDemo(key)
    runtime.settings.notify_api_key = SecretStr(key)
    runtime.settings.notify_base_url = server.url
    return server


def _wait_messages(runtime: Runtime, notify: NotifyDemo, posted: list[Posted], timeout: float) -> None:
    """Waits (at most `timeout`) until each posted submission of a form with an acknowledgement
    has had one sent."""
    forms = load_notification_config(runtime.settings.config_dir).forms("acknowledgement")
    due = {p.reference for p in posted if p.reference and p.form_id in forms}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = {m.get("reference") for m in notify.state.sent()}
        if all(f"{reference}/acknowledgement" in sent for reference in due):
            return
        time.sleep(0.2)


def _report_messages(notify: NotifyDemo) -> None:
    sent = notify.state.sent()
    print(f"\nMessages to residents (GOV.UK Notify simulator, {notify.url}): {len(sent)} sent; "
          f"read them at {notify.url}/_control/notifications")
    for message in sorted(sent, key=lambda m: str(m.get("reference"))):
        print(f"  {message['type']} for {message.get('reference')}: {message.get('subject') or message.get('body')}")


def run_demo(settings: Settings, environ: Mapping[str, str], once: bool, port: int | None, timeout: float) -> int:
    log_path = Path(settings.database_url.removeprefix("sqlite:///")).parent if settings.database_url.startswith("sqlite:///") else Path("var")
    log_path.mkdir(parents=True, exist_ok=True)
    log_file = (log_path / "demo.log").open("a", encoding="utf-8")
    configure(settings.log_level, settings.log_json, stream=log_file)

    env = dict(environ)
    api_key = settings.demo_api_key or secrets.token_urlsafe(24)
    env["HUB_DEMO_API_KEY"] = api_key
    simulators = start_all(env)

    runtime = Runtime.build(settings, env)
    if "HUB_PAY_URL" not in environ:
        # paid forms pay on the GOV.UK Pay simulator the demo just started
        runtime.settings.pay_url = env["HUB_PAY_URL"]
        runtime.settings.pay_api_key = SecretStr(env["HUB_PAY_API_KEY"])
    upgrade(runtime.engine)
    relay = Relay(runtime)
    try:
        api = ServerThread(create_app(runtime, relay), port=settings.demo_port if port is None else port).start()
    except OSError as exc:
        print(f"Cannot listen on port {settings.demo_port if port is None else port}: {exc.strerror}. "
              "Choose another with: make demo DEMO_ARGS='--port 8080'")
        return 2
    if "HUB_PUBLIC_URL" not in environ:
        # status URLs handed to front ends point at the port the demo actually listens on
        runtime.settings.public_url = api.url
    try:
        provider = console_sign_in(runtime, api.port, settings.demo_idp_port)
    except OSError as exc:
        api.stop()
        print(f"Cannot start the demo's identity provider on port {settings.demo_idp_port}: {exc.strerror}. "
              "Choose another with HUB_DEMO_IDP_PORT (0: any free port).")
        return 2
    try:
        notify = resident_messages(runtime, environ)
    except OSError as exc:
        api.stop()
        if provider is not None:
            provider.stop()
        print(f"Cannot start the demo's GOV.UK Notify simulator: {exc.strerror}.")
        return 2
    stop = threading.Event()
    worker = Worker(runtime, concurrency=4)
    worker_thread = threading.Thread(target=worker.run, args=(stop, 5.0), name="hub-worker", daemon=True)
    worker_thread.start()
    # retention, status polling and webhook sending, as `hub worker` runs them
    periodic = Periodic(jobs(runtime))
    periodic.start(stop)
    try:
        print(f"Council Connector Hub demo: API on {api.url} (OpenAPI docs at {api.url}/docs), logs in {log_file.name}")
        posted = _post_samples(api.url, api_key, settings.schemas_dir, runtime.forms.ids())
        photo = _post_photo(api.url, api_key, settings.schemas_dir, runtime.forms.ids(), log_path, posted)
        statuses = _wait(runtime, [p.reference for p in posted if p.reference], timeout)
        all_delivered = _report(posted, statuses, simulators)
        all_delivered = report_paid([(p.sample, p.reference) for p in posted if p.form_id == PAID_FORM and p.reference],
                                    statuses) and all_delivered
        if photo is not None:
            open311 = next((office.url for office in simulators if office.name == PHOTO_CONNECTOR), None)
            all_delivered = report_photo(photo, statuses.get(photo.reference or ""), open311) and all_delivered
        if notify is not None:
            _wait_messages(runtime, notify, posted, timeout)
            _report_messages(notify)
        print(f"\nThe demo client's API key: {api_key}   (set your own with HUB_DEMO_API_KEY)")
        if provider is not None:
            print(f"Staff console: open {runtime.settings.public_url}/console and press \"{provider.subject}\" on the "
                  f"identity provider's page ({provider.url}): you are signed in as {provider.name}.")
        if once:
            return 0 if all_delivered else 1
        sample = shlex.quote(json.dumps(_samples(settings.schemas_dir, ["missed-bin-collection"])[0][2], ensure_ascii=False))
        print("Try it:\n"
              f"  curl -s -X POST {api.url}/v1/forms/missed-bin-collection/submissions \\\n"
              f"    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n"
              f"    -d {sample}")
        print("Press Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        worker_thread.join(10)
        periodic.join(5)
        api.stop()
        if provider is not None:
            provider.stop()
        if notify is not None:
            notify.stop()
        for office in simulators:
            office.stop()
        runtime.close()
        log_file.close()


def _post_samples(base_url: str, api_key: str, schemas_dir: Path, forms: list[str]) -> list[Posted]:
    posted: list[Posted] = []
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        for form_id, name, payload in _samples(schemas_dir, forms):
            response = client.post(f"/v1/forms/{form_id}/submissions", json=payload)
            if response.status_code == 202:
                _pay(response.json())
                posted.append(Posted(form_id, name, response.json()["reference"]))
            else:
                posted.append(Posted(form_id, name, None, f"HTTP {response.status_code}: {response.text[:200]}"))
    return posted


def _post_photo(base_url: str, api_key: str, schemas_dir: Path, forms: list[str], folder: Path,
                posted: list[Posted]) -> PhotoReport | None:
    """A resident's fly-tipping report with a photo uploaded first (hub/demo_journeys.py)."""
    if PHOTO_FORM not in forms:
        return None
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as client:
        photo = post_photo_report(client, schemas_dir, folder)
    if photo is not None:
        posted.append(Posted(PHOTO_FORM, "uploaded-photo", photo.reference, photo.error))
    return photo


def _pay(receipt: dict[str, Any]) -> None:
    """A paid form's resident: presses "Pay now" on the GOV.UK Pay simulator's page and follows
    its redirect back to the hub's return URL, which releases the deliveries (docs/payments.md)."""
    next_url = (receipt.get("payment") or {}).get("next_url")
    if not next_url:
        return
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        back = browser.post(f"{next_url}/complete")
        if back.is_redirect:
            browser.get(back.headers["location"])


def _wait(runtime: Runtime, references: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, dict[str, Any]] = {}
    tenant = runtime.config.clients["demo-portal"].tenant
    while True:
        for reference in references:
            found = store.status(runtime.engine, tenant, reference)
            if found is not None:
                statuses[reference] = found
        open_ = [d for s in statuses.values() for d in s["deliveries"] if d["state"] in ("pending", "retrying")]
        if (len(statuses) == len(references) and not open_) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def _report(posted: list[Posted], statuses: dict[str, dict[str, Any]], simulators: list[DemoBackOffice]) -> bool:
    rows: list[list[str]] = []
    ok = True
    for item in posted:
        if item.reference is None:
            rows.append([item.form_id, item.sample, "-", "-", "rejected", item.error or ""])
            ok = False
            continue
        deliveries = statuses.get(item.reference, {}).get("deliveries", [])
        if not deliveries:
            rows.append([item.form_id, item.sample, item.reference, "-", "no route", ""])
            ok = False
        for d in deliveries:
            ok = ok and d["state"] == "delivered"
            rows.append([item.form_id, item.sample, item.reference, d["connector"], d["state"], d["external_reference"] or d["last_error"] or ""])
    print(_table(rows, ["form", "sample", "reference", "back office", "state", "back-office reference"]))
    print("\nWhat each back office received:")
    for office in simulators:
        print(f"  {office.name} ({office.url}): {office.summary()}")
    delivered = sum(1 for r in rows if r[4] == "delivered")
    print(f"\n{delivered} of {len(rows)} deliveries delivered" + ("" if ok else " — NOT ALL DELIVERED"))
    return ok
