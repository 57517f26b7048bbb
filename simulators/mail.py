"""A runnable mail sink: a real SMTP server (aiosmtpd) on loopback that keeps what it receives,
counts resends by Message-ID, and fails on command, for the demo and the tests of the e-mail connector.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["rcpt", "data"]


@dataclass
class Received:
    message_id: str
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    times: int = 1  # how often this Message-ID arrived; a resend of the same delivery counts here

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def attachment(self, filename: str) -> bytes:
        for part in self.message.iter_attachments():
            if part.get_filename() == filename:
                content = part.get_payload(decode=True)
                assert isinstance(content, bytes)
                return content
        raise KeyError(f"no attachment {filename!r}; have {[p.get_filename() for p in self.message.iter_attachments()]}")


@dataclass
class FailurePlan:
    """The next `count` RCPT (or DATA) commands are answered with `reply` instead of accepted."""

    count: int = 0
    stage: Stage = "rcpt"
    reply: str = "451 4.3.0 Simulated temporary failure, try again later"


@dataclass
class MailSinkState:
    """What arrived, behind one lock: aiosmtpd runs in its own thread and event loop."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _messages: dict[str, Received] = field(default_factory=dict)
    _plan: FailurePlan = field(default_factory=FailurePlan)
    _refused: int = 0

    def fail(self, count: int = 1, code: int = 451, stage: Stage = "rcpt", text: str | None = None) -> None:
        default = "Simulated temporary failure, try again later" if code < 500 else "Simulated permanent failure: mailbox unavailable"
        enhanced = "4.3.0" if code < 500 else "5.1.1"
        with self._lock:
            self._plan = FailurePlan(count, stage, f"{code} {enhanced} {text or default}")

    def _failure(self, stage: Stage) -> str | None:
        with self._lock:
            if self._plan.count <= 0 or self._plan.stage != stage:
                return None
            self._plan.count -= 1
            self._refused += 1
            return self._plan.reply

    def _keep(self, envelope: Envelope) -> Received:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        message_id = str(parsed["Message-ID"] or f"<no-id-{len(self._messages)}@sink>")
        with self._lock:
            if message_id in self._messages:
                self._messages[message_id].times += 1
                return self._messages[message_id]
            kept = Received(message_id, str(envelope.mail_from), list(envelope.rcpt_tos), raw)
            self._messages[message_id] = kept
            return kept

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            arrived = sum(m.times for m in self._messages.values())
            return {"messages": len(self._messages), "arrived": arrived, "duplicates": arrived - len(self._messages), "refused": self._refused}

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._plan, self._refused = FailurePlan(), 0


class _Handler:
    def __init__(self, state: MailSinkState, on_message: Callable[[Received], None] | None) -> None:
        self.state, self.on_message = state, on_message

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        failure = self.state._failure("rcpt")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self.state._failure("data")
        if failure is not None:
            return failure
        kept = self.state._keep(envelope)
        if self.on_message is not None:
            self.on_message(kept)
        return f"250 OK: queued as {kept.message_id}"


class _Controller(Controller):
    """aiosmtpd's Controller on a socket bound before start, so port 0 gives a free port with no race."""

    def __init__(self, handler: Any, host: str, port: int, **kwargs: Any) -> None:
        self._socket = socket.create_server((host, port))
        super().__init__(handler, hostname=host, port=self._socket.getsockname()[1], **kwargs)

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._socket, ssl=self.ssl_context)


class MailSink:
    """A running SMTP sink. `tls_context` offers STARTTLS (or, with `implicit_tls`, TLS from the first
    byte); `credentials` requires AUTH PLAIN/LOGIN with that user name and password."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        on_message: Callable[[Received], None] | None = None,
    ) -> None:
        self.state = MailSinkState()
        self._credentials = credentials
        kwargs: dict[str, Any] = {"server_hostname": "mail-sink.invalid", "ident": "Council hub mail sink"}
        if implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs["tls_context"] = tls_context
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=tls_context is not None)
        self._controller = _Controller(_Handler(self.state, on_message), host, port, **kwargs)
        self.host, self.port = host, self._controller.port

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self._credentials is not None and (
            auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        # handled=False: aiosmtpd then answers a failure with 535 itself
        return AuthResult(success=ok, handled=ok, auth_data=auth_data if ok else None)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


class _DemoMail:
    """The mail sink started by the demo: one server standing in for the council's mail relay."""

    def __init__(self) -> None:
        self.name = "mail (council tax and feedback mailboxes)"
        self.sink = MailSink().start()
        self.url = self.sink.url

    def summary(self) -> str:
        by_mailbox: dict[str, int] = {}
        for message in self.sink.state.messages():
            for rcpt in message.rcpt_tos:
                by_mailbox[rcpt] = by_mailbox.get(rcpt, 0) + 1
        stats = self.sink.state.stats()
        mailboxes = ", ".join(f"{n} to {box}" for box, n in sorted(by_mailbox.items())) or "nothing"
        return f"{stats['messages']} message(s): {mailboxes}; {stats['duplicates']} resend(s) recognised by Message-ID"

    def stop(self) -> None:
        self.sink.stop()


def demo(env: dict[str, str]) -> list[_DemoMail]:
    """Points the e-mail connectors (config/*.yaml: SMTP_HOST, SMTP_PORT) at a fresh sink."""
    office = _DemoMail()
    env["SMTP_HOST"], env["SMTP_PORT"] = office.sink.host, str(office.sink.port)
    return [office]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.mail", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--save-dir", type=Path, default=None, help="also write each message there as <n>.eml")
    args = parser.parse_args(argv)
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)

    def show(received: Received) -> None:
        print(f"{received.message_id}  x{received.times}  to {', '.join(received.rcpt_tos)}  {received.subject}", flush=True)
        if args.save_dir and received.times == 1:
            (args.save_dir / f"{len(list(args.save_dir.glob('*.eml'))) + 1:04d}.eml").write_bytes(received.raw)

    sink = MailSink(args.host, args.port, on_message=show).start()
    print(f"mail sink listening on {sink.url}; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
