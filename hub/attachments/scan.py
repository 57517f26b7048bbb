"""The virus scan: ClamAV's clamd over its socket (INSTREAM), with an explicit timeout.
A scanner that does not answer is `Unscanned`, never an error: intake accepts and marks it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Clean:
    pass


@dataclass(frozen=True)
class Infected:
    signature: str


@dataclass(frozen=True)
class Unscanned:
    reason: str


Verdict = Clean | Infected | Unscanned


@dataclass(frozen=True)
class Clamd:
    """clamd at a Unix socket path."""

    socket_path: str
    timeout: float = DEFAULT_TIMEOUT

    def scan(self, chunks: Iterable[bytes]) -> Verdict:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(self.socket_path)
                conn.sendall(b"zINSTREAM\0")
                for chunk in chunks:
                    if chunk:
                        conn.sendall(struct.pack("!L", len(chunk)) + chunk)
                conn.sendall(struct.pack("!L", 0))
                reply = b""
                while not reply.endswith(b"\0"):
                    part = conn.recv(4096)
                    if not part:
                        break
                    reply += part
        except OSError as error:
            return Unscanned(f"clamd did not answer: {error.__class__.__name__}")
        text = reply.rstrip(b"\0").decode(errors="replace")
        if text.endswith(" FOUND"):
            return Infected(text.removeprefix("stream: ").removesuffix(" FOUND"))
        if text.endswith(" OK"):
            return Clean()
        return Unscanned(f"clamd answered {text[:80]!r}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(self.socket_path)
                conn.sendall(b"zPING\0")
                return conn.recv(16).startswith(b"PONG")
        except OSError:
            return False
