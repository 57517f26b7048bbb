"""A real S3-compatible server for tests: moto's server mode (`moto_server`, from the `moto[server]`
test dependency) on a private loopback port, with one bucket made. A missing `moto_server` skips
locally and fails with CI=true (tests.support.realworld.unavailable)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.realworld import unavailable
from tests.support.servers import free_port

STARTUP_TIMEOUT = 30.0
# moto takes any credentials; boto3 needs some set
ACCESS_KEY, SECRET_KEY, REGION = "test", "test", "us-east-1"


def moto_server_command() -> str | None:
    """`moto_server` on PATH, else beside this interpreter (a venv's bin/ is not always on PATH)."""
    beside = Path(sys.executable).parent / "moto_server"
    return shutil.which("moto_server") or (str(beside) if beside.exists() else None)


class S3Server:
    """moto's S3 server with bucket `bucket`: `.endpoint_url`, `.client()` (boto3), `.env()` (the
    hub's settings and boto3's credentials for HUB_ATTACHMENT_STORE=s3), `.close()`."""

    def __init__(self, bucket: str = "hub") -> None:
        command = moto_server_command()
        if command is None:
            unavailable("moto_server is not installed (pip install 'moto[server]')")
        self.bucket = bucket
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        client = self.client()
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.1)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            region_name=REGION, config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))

    def env(self) -> dict[str, str]:
        return {"HUB_ATTACHMENT_STORE": "s3", "HUB_ATTACHMENT_S3_BUCKET": self.bucket,
                "HUB_ATTACHMENT_S3_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [str(item["Key"]) for item in listed.get("Contents", [])]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
