"""`hub demo` shows a photo report end to end: a photo with GPS EXIF uploaded, a fly-tipping report
naming it, the street-cleansing Open311 back office given a `media_url` whose bytes have no EXIF.
And the README's walk-throughs ("A photo report", "A paid garden waste subscription") are run,
command by command, against a running demo, so what they show cannot drift from what the hub does.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from hub.demo_journeys import PhotoReport, photo_with_gps, report_paid, report_photo
from simulators import open311
from simulators.control import DemoServer

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
KEY = "demo-photo-test-key-0123456789"
GPS = 0x8825


@dataclass
class Demo:
    port: int
    output: str
    folder: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`hub demo` serving on a free port, its data (and the photo it writes) in a folder of its own."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "var").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env = {**clean, "HUB_DATA_DIR": str(folder / "var"), "HUB_DEMO_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "hub", "demo", "--port", "0"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())  # type: ignore[union-attr]
        output = "".join(lines)
        port = int(re.search(r"API on http://127\.0\.0\.1:(\d+)", output).group(1))  # type: ignore[union-attr]
        yield Demo(port, output, folder)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def exif(content: bytes) -> dict[int, Any]:
    found = Image.open(io.BytesIO(content)).getexif()
    return {**dict(found), **({GPS: dict(found.get_ifd(GPS))} if found.get_ifd(GPS) else {})}


# --- the demo's own photo report -------------------------------------------------------------

def test_the_demo_uploads_a_photo_with_gps_and_the_open311_back_office_gets_it_without_its_exif(demo: Demo) -> None:
    section = demo.output[demo.output.index("A photo report"):]
    photo = Path(re.search(r"^  photo (\S+): (\d+) bytes", section, re.M).group(1))  # type: ignore[union-attr]
    assert photo == demo.folder / "var" / "fly-tipping-photo.jpg"
    assert GPS in exif(photo.read_bytes())  # what the resident's phone sent carries a position
    reference = re.search(r"^  the resident's reference ([A-Z]{3}-\w{10}): street-cleansing delivered \((\d+)\)", section, re.M)
    assert reference, section
    row = re.search(rf"^report-fly-tipping\s+uploaded-photo\s+{reference.group(1)}\s+street-cleansing\s+delivered\s+{reference.group(2)}",
                    demo.output, re.M)
    assert row, demo.output
    printed = re.search(r"service request (\d+): media_url (\S+)", section).group(2)  # type: ignore[union-attr]
    assert re.search(r"EXIF removed: yes, GPS removed: yes$", section, re.M), section

    # the back office's own record, read over Open311, names the same link
    office = re.search(r"^  street-cleansing \((http://127\.0\.0\.1:\d+/open311/v2)\)", demo.output, re.M).group(1)  # type: ignore[union-attr]
    [request] = httpx.get(f"{office}/requests/{reference.group(2)}.json", timeout=10).json()
    assert request["media_url"] == printed and f":{demo.port}/v1/attachments/att_" in printed
    fetched = httpx.get(printed, timeout=10)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"
    assert exif(fetched.content) == {} and fetched.content != photo.read_bytes()
    assert Image.open(io.BytesIO(fetched.content)).size == Image.open(photo).size
    # the resident's status shows the same reference delivered
    status = httpx.get(f"http://127.0.0.1:{demo.port}/v1/submissions/{reference.group(1)}",
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert {d["connector"]: d["state"] for d in status["deliveries"]}["street-cleansing"] == "delivered"
    # the file is kept on the embedded default: encrypted files under the data folder
    kept = [p for p in (demo.folder / "var" / "attachments").rglob("*") if p.is_file()]
    assert kept and all(fetched.content not in p.read_bytes() for p in kept)


def test_the_demo_shows_each_paid_garden_waste_subscription_held_until_paid_then_delivered(demo: Demo) -> None:
    lines = re.findall(r"^  ([A-Z]{3}-\w{10}) (\S+): £(\d+\.\d\d), payment (\w+), submission (\w+); (.*)$", demo.output, re.M)
    samples = sorted(p.stem for p in (REPO / "schemas" / "garden-waste-paid" / "samples").glob("*.json"))
    assert sorted(line[1] for line in lines) == samples, demo.output
    for _, _, _, payment, submission, went in lines:
        assert (payment, submission) == ("success", "paid")
        assert re.fullmatch(r"held until paid, then waste delivered \(SR\d+\)", went), went


def test_a_photo_report_whose_back_office_got_no_media_url_fails_the_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = open311.Open311State()
    office = DemoServer("street-cleansing", open311.create_app(state), lambda: "", path=open311.PREFIX)
    try:
        made = state.create("FLYTIP", {"lat": "54.6", "long": "-5.6"}, {})
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(photo_with_gps())
        report = PhotoReport(photo, photo.stat().st_size, {"id": "att_x", "media_type": "image/jpeg", "size": 1, "scan": "clean"}, "EDC-AAAAAAAAAA")
        status = {"deliveries": [{"connector": "street-cleansing", "state": "delivered", "external_reference": made.service_request_id,
                                  "last_error": None}]}
        assert report_photo(report, status, office.url) is False
        assert "NO media_url" in capsys.readouterr().out
        assert report_photo(report, {"deliveries": []}, office.url) is False
    finally:
        office.stop()


def test_a_paid_submission_delivered_before_its_payment_succeeded_is_not_shown_as_held() -> None:
    now = datetime.now(UTC)
    status = {"status": "paid", "payment": {"state": "success", "amount_pence": 5500},
              "deliveries": [{"connector": "waste", "state": "delivered", "external_reference": "SR1", "last_error": None}],
              "timeline": [{"event": "delivered", "connector": "waste", "status": None, "at": now.isoformat()},
                           {"event": "status", "connector": "pay", "status": "payment_success", "at": (now + timedelta(seconds=1)).isoformat()}]}
    assert report_paid([("new-two-bins", "EDC-AAAAAAAAAA")], {"EDC-AAAAAAAAAA": status}) is False
    status["timeline"][0]["at"] = (now + timedelta(seconds=2)).isoformat()  # delivered after it was paid
    assert report_paid([("new-two-bins", "EDC-AAAAAAAAAA")], {"EDC-AAAAAAAAAA": status}) is True


# --- the README's walk-throughs, run as written ------------------------------------------------

@dataclass
class Step:
    command: str
    answer: list[str] = field(default_factory=list)


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def steps(text: str) -> list[Step]:
    """The ```sh blocks' commands, each with the `# ...` lines after it (the answer shown)."""
    found: list[Step] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and line.startswith("#"):
                found[-1].answer.append(line[1:].strip())
                continue
            if not pending and not line.strip():
                continue
            pending += line + "\n"
            try:
                complete = not line.endswith("\\") and bool(shlex.split(pending, comments=True))
            except ValueError:  # a quote still open: the command goes on
                complete = False
            if complete:
                found.append(Step(pending.rstrip("\n")))
                pending = ""
    return found


def pattern(shown: str) -> str:
    """A regex of a value shown with `…` where the README elides it."""
    return ".*".join(re.escape(part) for part in shown.split("…"))


def shown_json(text: str) -> Any:
    """The README's answer as JSON: `…` alone is any value, `, …` more keys or items."""
    text = re.sub(r",\s*…\s*(?=[}\]])", "", text)
    text = re.sub(r"\[\s*…\s*\]", "[]", text)
    text = re.sub(r"(?<=[:\[,])\s*…(?=\s*[,}\]])", ' "…"', text)
    return json.loads(text)


def matches(shown: Any, real: Any) -> bool:
    if isinstance(shown, str):
        return shown == "…" or (isinstance(real, str) and re.fullmatch(pattern(shown), real, re.S) is not None)
    if isinstance(shown, dict):
        return isinstance(real, dict) and all(k in real and matches(v, real[k]) for k, v in shown.items())
    if isinstance(shown, list):
        left = list(real) if isinstance(real, list) else None
        if left is None:
            return False
        for item in shown:
            hit = next((i for i, r in enumerate(left) if matches(item, r)), None)
            if hit is None:
                return False
            left.pop(hit)
        return True
    return bool(shown == real)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


class Walk:
    """Runs a README section's commands in order in bash, as a newcomer in the checkout would."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "HUB_DEMO_API_KEY": KEY}
        self.last: Any = None
        # the checkout as seen from the demo's folder: its var/ is the demo's, schemas/ the repository's
        schemas = demo.folder / "schemas"
        if not schemas.exists():
            schemas.symlink_to(REPO / "schemas", target_is_directory=True)

    def local(self, text: str) -> str:
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{self.demo.port}").replace("localhost:8000", f"localhost:{self.demo.port}")

    def assign(self, command: str) -> bool:
        """`NAME=shown-value   # where it comes from`: the real value from the last answer, else the demo's output."""
        found = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S+)\s*(?:#.*)?", command)
        if not found:
            return False
        name, shown = found.group(1), self.local(found.group(2).strip("'"))
        if "…" not in shown:
            self.env[name] = shown
            return True
        candidates = sorted({s for s in strings(self.last) if re.fullmatch(pattern(shown), s)})
        if not candidates:
            candidates = sorted(set(re.findall(pattern(shown).replace(".*", r"[^\s()]*"), self.demo.output)))
        assert len(candidates) == 1, (command, candidates)
        self.env[name] = candidates[0]
        return True

    def run(self, step: Step) -> None:
        if self.assign(step.command):
            return
        command = self.local(step.command).replace(".venv/bin/python", shlex.quote(sys.executable))
        status_too = command.startswith("curl ") and " -w " not in command and " -o " not in command
        if status_too:
            command += " -w '\\n%{http_code}'"
        shown = self.local(" ".join(step.answer))
        # a newcomer reads a status a few seconds after submitting: a read may be asked again while delivery goes on
        deadline = time.monotonic() + (15 if "-X POST" not in command else 0)
        while True:
            done = subprocess.run(["bash", "-c", command], cwd=self.demo.folder, env=self.env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (step.command, done.stderr)
            output = done.stdout
            if not status_too:
                assert re.fullmatch(pattern(shown), output.strip()), (step.command, shown, output)
                return
            body, _, code = output.rpartition("\n")
            want_code, _, want_body = shown.partition(" ")
            self.last = json.loads(body)
            if (code == want_code and matches(shown_json(want_body), self.last)) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert code == want_code, (step.command, code, body)
        assert matches(shown_json(want_body), self.last), (step.command, want_body, body)


def test_the_readmes_photo_report_walk_through_is_what_the_hub_does(demo: Demo) -> None:
    walk = Walk(demo)
    found = steps(section("A photo report"))
    assert [s.command.split()[0] for s in found].count("curl") == 5, found
    for step in found:
        walk.run(step)
    # and what the walk-through says after it: the back office's copy has no EXIF, the sent one has GPS
    assert exif((demo.folder / "back-office.jpg").read_bytes()) == {}
    assert GPS in exif((demo.folder / "var" / "fly-tipping-photo.jpg").read_bytes())
    media_url = walk.env["MEDIA_URL"]
    tampered = media_url[:-1] + ("0" if media_url[-1] != "0" else "1")
    assert httpx.get(tampered, timeout=10).status_code == 403


def test_the_readmes_paid_garden_waste_walk_through_is_what_the_hub_does(demo: Demo) -> None:
    walk = Walk(demo)
    [submit] = steps(section("A paid garden waste subscription"))
    walk.run(submit)
    receipt = walk.last
    # "Open next_url in a browser and press Pay now": the page's Pay now form, then its redirects
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        page = browser.get(receipt["payment"]["next_url"])
        action = re.search(r'<form method="post" action="([^"]+)"><button>Pay now</button>', page.text).group(1)  # type: ignore[union-attr]
        back = browser.post(str(page.url.join(action)))
        assert back.status_code == 303 and f":{demo.port}/v1/payments/return/" in back.headers["location"]
        portal = browser.get(back.headers["location"])
        assert portal.is_redirect and f":{demo.port}" not in portal.headers["location"]  # on to the portal's page
    deadline = time.monotonic() + 30
    while True:
        status = httpx.get(f"http://127.0.0.1:{demo.port}/v1/submissions/{receipt['reference']}",
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
        if status["deliveries"][0]["state"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "paid"
    assert [(d["connector"], d["state"]) for d in status["deliveries"]] == [("waste", "delivered")]
    assert {"payment_created", "payment_success"} <= {e["status"] for e in status["timeline"]}
