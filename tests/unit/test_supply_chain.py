"""The locked supply chain (docs/deploy.md "Supply chain"): pyproject.toml and the lock files in
requirements/ agree, every pin carries its sha256, and every place that installs the hub (the
Makefile that CI and `make demo` use, the image's Containerfile) refuses anything without a hash.
And `make audit` (scripts/audit.py) runs pip-audit only against a vulnerability database that
answers, and says why it skipped otherwise; its decision is tested here with no network.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
# which lock holds which part of pyproject.toml; runtime.txt is in each of the others too
LOCK_OF = {None: "runtime.txt", "test": "test.txt", "bench": "bench.txt"}
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass
class Pin:
    name: str
    version: Version
    hashes: list[str] = field(default_factory=list)


def parse_lock(text: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins of a requirements file, by canonical name, and every line that is not a hashed pin."""
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    # a requirement continues over lines ending in a backslash; comments and blank lines are not entries
    entries = re.sub(r"\\\n", " ", text).splitlines()
    for entry in entries:
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        words = shlex.split(entry)
        requirement_text = " ".join(word for word in words if not word.startswith("--hash="))
        hashes = [word for word in words if word.startswith("--hash=")]
        if requirement_text.startswith("-"):
            problems.append(f"an option, not a pin: {entry[:80]}")
            continue
        requirement = Requirement(requirement_text)
        [*specifiers] = requirement.specifier
        if requirement.url or len(specifiers) != 1 or specifiers[0].operator != "==":
            problems.append(f"{requirement.name}: not pinned to one version with == ({requirement_text})")
            continue
        bad = [word for word in hashes if not SHA256.fullmatch(word)]
        if not hashes or bad:
            problems.append(f"{requirement.name}: no --hash=sha256: for its pin" if not hashes else f"{requirement.name}: {bad}")
        pins[canonicalize_name(requirement.name)] = Pin(requirement.name, Version(specifiers[0].version), hashes)
    return pins, problems


@cache
def lock(name: str) -> dict[str, Pin]:
    pins, _ = parse_lock((LOCKS / name).read_text())
    return pins


def pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def _extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What a declared dependency's extras (uvicorn[standard]) bring, read from its installed metadata."""
    if not requirement.extras:
        return []
    try:
        requires = metadata.requires(requirement.name) or []
    except metadata.PackageNotFoundError:
        return []
    found = []
    for line in requires:
        brought = Requirement(line)
        for extra in requirement.extras:
            environment = {**default_environment(), "python_version": "3.11", "sys_platform": "linux", "extra": extra}
            if brought.marker is not None and "extra" in str(brought.marker) and brought.marker.evaluate(environment):
                found.append(brought)
    return found


def disagreements(declared: list[str], pins: dict[str, Pin]) -> list[str]:
    """Every declared dependency (and what its extras bring) pinned in the lock to a version it allows."""
    problems = []
    for line in declared:
        requirement = Requirement(line)
        for needed in [requirement, *_extra_requirements(requirement)]:
            pin = pins.get(canonicalize_name(needed.name))
            if pin is None:
                problems.append(f"{needed.name} ({line}) is not in the lock")
            elif not needed.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{needed.name}: the lock pins {pin.version}, pyproject.toml asks {needed.specifier}")
            elif not pin.hashes:
                problems.append(f"{needed.name}: pinned without a hash")
    return problems


@pytest.mark.parametrize("name", ["runtime.txt", "test.txt", "bench.txt", "tools.txt", "pip.txt"])
def test_every_line_of_a_lock_file_is_a_pin_with_its_sha256(name: str) -> None:
    text = (LOCKS / name).read_text()
    pins, problems = parse_lock(text)
    assert problems == []
    assert pins, f"{name} pins nothing"
    assert "make lock" in text.split("\n", 4)[1], "the header says how to regenerate it"


@pytest.mark.parametrize("extra", [None, "test", "bench"])
def test_every_dependency_pyproject_declares_is_pinned_in_its_lock_with_a_hash(extra: str | None) -> None:
    declared = pyproject()
    pins = lock(LOCK_OF[extra])
    wanted = declared[""] + (declared[extra] if extra else [])
    assert disagreements(wanted, pins) == [], "pyproject.toml changed without `make lock` (docs/deploy.md)"


def test_the_locks_pin_a_package_they_share_to_the_same_version() -> None:
    """test.txt is constrained by runtime.txt and bench.txt by test.txt (scripts/lock.sh), so one
    venv can hold any of them together."""
    runtime, test, bench = lock("runtime.txt"), lock("test.txt"), lock("bench.txt")
    for lower, upper in ((runtime, test), (runtime, bench), (test, bench)):
        moved = {name: (str(pin.version), str(upper[name].version)) for name, pin in lower.items()
                 if name in upper and upper[name].version != pin.version}
        assert moved == {}
    assert set(runtime) <= set(test) and set(runtime) <= set(bench)


def test_the_installed_environment_is_what_the_lock_pins() -> None:
    """The venv the tests run in came from the locks (`make install-test`), not from a resolver's day."""
    wanted = {**lock("runtime.txt"), **lock("test.txt")}
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    differ = {name: (str(pin.version), str(installed[name])) for name, pin in wanted.items()
              if name in installed and installed[name] != pin.version}
    assert differ == {}, "run `make install-test` after `make lock`"


def needed(declared: list[str]) -> set[str]:
    """Every distribution the declared dependencies need on Python 3.11 linux x86_64, following
    the installed metadata (the venv came from the locks), extras included."""
    environment = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(line) for line in declared]
    while stack:
        requirement = stack.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if key[0] in excluded():
            continue
        for line in metadata.requires(requirement.name) or []:
            brought = Requirement(line)
            extras = requirement.extras or {""}
            if brought.marker is None or any(brought.marker.evaluate({**environment, "extra": extra}) for extra in extras):
                stack.append(brought)
    return {name for name, _ in seen}


def excluded() -> set[str]:
    """What requirements/excludes.txt leaves out of every lock on purpose (each with its reason there)."""
    path = LOCKS / "excludes.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return {canonicalize_name(line.strip()) for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize("extra", [None, "test"])
def test_a_lock_holds_exactly_what_pyproject_needs_and_no_stale_pin(extra: str | None) -> None:
    declared = pyproject()
    wanted = needed(declared[""] + (declared[extra] if extra else [])) - excluded()
    pinned = set(lock(LOCK_OF[extra]))
    assert (sorted(wanted - pinned), sorted(pinned - wanted)) == ([], []), "(missing, stale): run `make lock`"


def test_the_check_finds_a_lock_that_disagrees_with_pyproject() -> None:
    hashed = " \\\n    --hash=sha256:" + "ab" * 32
    pins, problems = parse_lock(f"fastapi==0.100.0{hashed}\nkombu==5.4.0\nhttpx>=0.27{hashed}\n")
    assert problems == ["kombu: no --hash=sha256: for its pin", "httpx: not pinned to one version with == (httpx>=0.27)"]
    assert disagreements(["fastapi>=0.115", "kombu>=5.4", "structlog>=24.1"], pins) == [
        "fastapi: the lock pins 0.100.0, pyproject.toml asks >=0.115",
        "kombu: pinned without a hash",
        "structlog (structlog>=24.1) is not in the lock",
    ]


def _pip_installs(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [" ".join(part.split()) for part in re.split(r"&&|\n", joined) if re.search(r"\bpip3? install\b", part)]


def test_the_makefile_installs_only_from_the_locks_with_hashes_required() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = _pip_installs(makefile)
    assert installs
    for command in installs:
        assert "--require-hashes -r requirements/" in command or "--no-deps -e ." in command, command
    for lock_file in ("requirements/runtime.txt", "requirements/test.txt", "requirements/pip.txt"):
        assert f"--require-hashes -r {lock_file}" in makefile
    # the stamps are remade when a lock file changes
    assert re.search(r"^\$\(BIN\)/hub:.*requirements/runtime\.txt", makefile, re.M)
    assert re.search(r"^\$\(VENV\)/\.test-deps:.*requirements/test\.txt", makefile, re.M)


def test_the_image_installs_from_the_runtime_lock_with_hashes_and_wheels_only() -> None:
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    installs = _pip_installs(containerfile)
    assert any("-r /src/requirements/runtime.txt" in command for command in installs)
    for command in installs:
        assert ("--require-hashes" in command and "--only-binary=:all:" in command) or "--no-deps /src" in command, command
    assert "tomllib" not in containerfile, "the image's dependencies come from the lock, not pyproject.toml"
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in ("requirements/runtime.txt", "requirements/pip.txt", "requirements/tools.txt"):
        assert f"!{needed}" in allowed, f".dockerignore keeps {needed} out of the build"
    assert "cyclonedx-py environment" in containerfile and "/opt/hub/sbom.cdx.json" in containerfile


# ---- make audit: the decision to run pip-audit or skip, with canned answers for the network


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supply_chain_audit", ROOT / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Network:
    """Answers by host; a host with no answer is unreachable, as api.osv.dev is on this machine."""

    def __init__(self, **answers: tuple[int, object]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, url: str, body: dict[str, object] | None) -> tuple[int, bytes]:
        self.asked.append(url)
        host = "osv" if "osv.dev" in url else "pypi"
        if host not in self.answers:
            raise OSError(f"[Errno -2] Name or service not known: {url}")
        status, payload = self.answers[host]
        return status, json.dumps(payload).encode()


ADVISORY = {"id": "GHSA-462w-v97r-4m45", "aliases": ["CVE-2019-10906"]}


def _main(network: Network, run_status: int = 0) -> tuple[int, list[list[str]]]:
    ran: list[list[str]] = []

    def run(command: list[str]) -> int:
        ran.append(command)
        return run_status

    return _audit().main(["requirements/runtime.txt"], fetch=network, run=run), ran


def test_audit_skips_with_its_reason_when_no_database_answers(capsys: pytest.CaptureFixture[str]) -> None:
    # as on this machine: no DNS for api.osv.dev; pypi.org serves no per-release JSON pages
    status, ran = _main(Network(pypi=(404, {"message": "Not Found"})))
    said = capsys.readouterr().out
    assert (status, ran) == (0, [])
    assert "audit: skipped: no vulnerability database reachable" in said
    assert "api.osv.dev unreachable" in said and "HTTP 404 for jinja2 2.10" in said


def test_audit_skips_when_a_database_answers_without_vulnerability_data(capsys: pytest.CaptureFixture[str]) -> None:
    status, ran = _main(Network(osv=(200, {}), pypi=(200, {"info": {"version": "2.10"}, "vulnerabilities": []})))
    said = capsys.readouterr().out
    assert (status, ran) == (0, [])
    assert "skipped:" in said and "lists no advisories for jinja2 2.10" in said


def test_audit_runs_pip_audit_against_osv_when_it_answers_and_fails_on_a_finding(capsys: pytest.CaptureFixture[str]) -> None:
    network = Network(osv=(200, {"vulns": [ADVISORY]}))
    status, [command] = _main(network, run_status=1)
    assert status == 1
    assert command[:3] == [sys.executable, "-m", "pip_audit"]
    for option in ("--require-hashes", "--disable-pip", "--strict"):
        assert option in command
    assert command[command.index("--requirement") + 1] == "requirements/runtime.txt"
    assert command[command.index("--vulnerability-service") + 1] == "osv"
    assert network.asked == ["https://api.osv.dev/v1/query"]
    assert "audit: FAILED" in capsys.readouterr().out


def test_audit_falls_back_to_pypi_when_only_pypi_serves_advisories() -> None:
    status, [command] = _main(Network(pypi=(200, {"vulnerabilities": [ADVISORY]})), run_status=0)
    assert status == 0
    assert command[command.index("--vulnerability-service") + 1] == "pypi"
