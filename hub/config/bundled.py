"""Where the hub finds what it ships with: the demo configuration, form schemas, mappings and
the public standards it implements (`standards/`), in a checkout or in an installed wheel.

In a checkout they are the repository's own folders; an installed hub carries the same folders
as package data under `hub/bundled_files/`. A `standards:///<folder>/<file>` URI names a file of the
standards, so schemas and connector options can point at one without knowing where it lives.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import unquote, urlsplit

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# a source checkout (make demo, make test) rather than an installed wheel
IN_CHECKOUT = (PACKAGE_ROOT / "pyproject.toml").is_file() and (PACKAGE_ROOT / "standards").is_dir()
STANDARDS_SCHEME = "standards"
FOLDERS = ("config", "schemas", "mappings", "standards")


def folder(name: str) -> Path:
    """One of FOLDERS, as shipped with this hub."""
    if name not in FOLDERS:
        raise ValueError(f"no bundled folder {name!r}; there are {', '.join(FOLDERS)}")
    if IN_CHECKOUT:
        return PACKAGE_ROOT / name
    return Path(str(files("hub") / "bundled_files" / name))


def default_data_dir() -> Path:
    """Where the demo's SQLite file and development keys go: `var/` in a checkout, else `./var`."""
    return PACKAGE_ROOT / "var" if IN_CHECKOUT else Path.cwd() / "var"


def is_standards_uri(location: str) -> bool:
    return location.startswith(f"{STANDARDS_SCHEME}:")


def standards_path(location: str, root: Path | None = None) -> Path:
    """The file a `standards:///folder/file` URI names, under `root` (a council's own copies,
    HUB_STANDARDS_DIR) or the standards shipped with the hub; never outside that folder."""
    parts = urlsplit(location)
    if parts.scheme != STANDARDS_SCHEME or parts.netloc or not parts.path.startswith("/"):
        raise ValueError(f"{location!r} is not a standards:///<folder>/<file> URI")
    base = (root or folder("standards")).resolve()
    path = (base / unquote(parts.path).lstrip("/")).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{location!r} points outside the standards folder")
    return path
