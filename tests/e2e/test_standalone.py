"""The hub stands alone: a copy of the repository with nothing beside it runs the demo, and so
does a hub installed from its wheel, run from another directory. Both deliver every sample."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any HUB_ setting of the test run, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.upper().startswith("HUB_")}, **extra}


def bare_copy(destination: Path) -> Path:
    """The tracked files of the working tree, as a clone has them, with no ../shared beside it."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def demo(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "demo", "--once", "--port", "0"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_a_clone_with_nothing_beside_it_delivers_every_sample(tmp_path: Path) -> None:
    clone = bare_copy(tmp_path / "alone" / "hub")
    assert not (clone.parent / "shared").exists()
    done = demo(clone, clean_env(PYTHONPATH=str(clone)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "NOT ALL DELIVERED" not in done.stdout
    assert (clone / "var" / "hub.db").is_file()  # the clone's own data directory, not this checkout's


def test_the_installed_wheel_delivers_every_sample_from_another_directory(tmp_path: Path) -> None:
    source = bare_copy(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=240)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    # the hub from its wheel; its dependencies are the ones this test run has installed
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = demo(elsewhere, clean_env(PYTHONPATH=os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "NOT ALL DELIVERED" not in done.stdout
    assert (elsewhere / "var" / "hub.db").is_file()
    assert (site / "hub" / "bundled_files" / "standards" / "govuk-forms").is_dir()
