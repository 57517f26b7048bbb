"""A private clamd for tests: its own temp DatabaseDirectory holding a signature database the
test writes (an `.hdb` line `md5:size:name`), on a temp Unix socket. A missing clamd skips
locally and fails with CI=true (tests.support.realworld.unavailable)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hub.attachments.scan import Clamd
from tests.support.realworld import unavailable

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
STARTUP_TIMEOUT = 120.0


class ClamdServer:
    """clamd with a one-signature database: `EICAR_LIKE` matches `signed_bytes` exactly."""

    def __init__(self, signed_bytes: bytes, name: str = "Hub.Test.Signature") -> None:
        if not Path(CLAMD).exists():
            unavailable("clamd is not installed (apt-get install -y clamav-daemon)")
        self.dir = Path(tempfile.mkdtemp(prefix="hub-clamd-"))
        self.signature = name
        db = self.dir / "db"
        db.mkdir()
        md5 = hashlib.md5(signed_bytes).hexdigest()
        (db / "test.hdb").write_text(f"{md5}:{len(signed_bytes)}:{name}\n")
        self.socket = str(self.dir / "clamd.sock")
        conf = self.dir / "clamd.conf"
        conf.write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {db}\nForeground yes\n"
            f"LogFile {self.dir / 'clamd.log'}\nPidFile {self.dir / 'clamd.pid'}\n"
            f"TemporaryDirectory {self.dir}\nUser root\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(conf)

    def start(self, conf: Path | None = None) -> None:
        conf = conf or self.dir / "clamd.conf"
        self.proc = subprocess.Popen([CLAMD, "--config-file", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.client().ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        log = (self.dir / "clamd.log").read_text() if (self.dir / "clamd.log").exists() else ""
        raise RuntimeError(f"clamd did not start: {log[-2000:]}")

    def client(self) -> Clamd:
        return Clamd(self.socket, timeout=10.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
