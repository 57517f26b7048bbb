"""`make audit`: pip-audit of a lock file (requirements/runtime.txt), where a vulnerability database answers.

pip-audit asks a vulnerability service about every pinned release: OSV (api.osv.dev, its default)
or PyPI's JSON API (`-s pypi`, the `vulnerabilities` of pypi.org/pypi/<name>/<version>/json). A
service that is unreachable, or that answers but has no vulnerability data (a mirror serving only
the latest release's page, say), would let pip-audit report "No known vulnerabilities found" for
nothing checked. So each service is first asked about a canary, a release with published
advisories (jinja2 2.10: CVE-2019-10906 and later ones); only a service that names them is used.

- a service names the canary's advisories: pip-audit runs against it with --strict; any finding,
  or any pin it cannot look up, fails the audit (pip-audit's exit status);
- none does: the audit prints "audit: skipped: <reason>" and exits 0.

    python scripts/audit.py requirements/runtime.txt        (`make audit` runs this)
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

# a release with published advisories, which every working vulnerability database lists
CANARY = ("jinja2", "2.10")
TIMEOUT = 15.0

# fetch(url, json_body or None) -> (HTTP status, body); raises OSError when nothing answers
Fetch = Callable[[str, "dict[str, object] | None"], "tuple[int, bytes]"]
Run = Callable[[list[str]], int]


def urllib_fetch(url: str, body: dict[str, object] | None) -> tuple[int, bytes]:
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("PIP_CERT") or None
    context = ssl.create_default_context(cafile=cafile)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _vulnerabilities(status: int, body: bytes, key: str) -> int | str:
    """How many advisories the answer lists, or why it is not an answer."""
    if status != 200:
        return f"answered HTTP {status}"
    try:
        listed = json.loads(body).get(key)
    except (ValueError, AttributeError):
        return "answered something that is not JSON"
    return len(listed) if isinstance(listed, list) else 0


def probe(service: str, fetch: Fetch) -> str | None:
    """None when the service lists the canary's advisories, else the reason it cannot be used."""
    name, version = CANARY
    try:
        if service == "osv":
            where = "api.osv.dev"
            status, body = fetch("https://api.osv.dev/v1/query",
                                 {"package": {"name": name, "ecosystem": "PyPI"}, "version": version})
            found = _vulnerabilities(status, body, "vulns")
        else:
            where = "PyPI's JSON API"
            status, body = fetch(f"https://pypi.org/pypi/{name}/{version}/json", None)
            found = _vulnerabilities(status, body, "vulnerabilities")
    except OSError as error:
        return f"{where} unreachable ({error})"
    if isinstance(found, str):
        return f"{where} {found} for {name} {version}"
    if found == 0:
        return f"{where} lists no advisories for {name} {version}, which has several: it serves no vulnerability data here"
    return None


def choose(fetch: Fetch) -> tuple[str | None, list[str]]:
    """The first service that works (OSV, then PyPI), and why each one before it did not."""
    reasons: list[str] = []
    for service in ("osv", "pypi"):
        reason = probe(service, fetch)
        if reason is None:
            return service, reasons
        reasons.append(reason)
    return None, reasons


def audit_command(lock: str, service: str) -> list[str]:
    # --disable-pip: the lock is complete and hashed, nothing is resolved or installed to audit it
    return [sys.executable, "-m", "pip_audit", "--requirement", lock, "--require-hashes", "--disable-pip",
            "--strict", "--vulnerability-service", service, "--progress-spinner", "off"]


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode


def main(argv: Sequence[str], fetch: Fetch = urllib_fetch, run: Run = _run) -> int:
    if len(argv) != 1:
        print("usage: python scripts/audit.py requirements/runtime.txt", file=sys.stderr)
        return 2
    [lock] = argv
    service, reasons = choose(fetch)
    if service is None:
        print(f"audit: skipped: no vulnerability database reachable: {'; '.join(reasons)}")
        return 0
    command = audit_command(lock, service)
    print(f"audit: {lock} against {service} ({' '.join(command[1:])})", flush=True)
    status = run(command)
    print(f"audit: {'passed' if status == 0 else 'FAILED'} ({lock}, {service})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
