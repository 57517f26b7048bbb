"""E-mail connector for back offices with no API: a plain-text message to a team mailbox over SMTP,
with the record attached as JSON and CSV and a Message-ID derived from the idempotency key. Files a
mapping marks `attach: file` are attached as themselves (name and media type from the mapping).

    SMTP connect/timeout, disconnect, 4xx reply   -> TransientError (retry)
    5xx reply, untrusted certificate, no STARTTLS -> PermanentError (park)
    template error on this record                 -> PermanentError (park)
    mail server not on the tenants' allowed hosts -> OutboundRefused (park; nothing sent)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, field_validator, model_validator

from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Preview, Secrets
from hub.attachments.delivery import AttachedFile, files_in
from hub.errors import ConfigError, DeliveryError, OutboundRefused, PermanentError, TransientError
from hub.logs import get_logger
from hub.outbound.guard import check_host

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
log = get_logger("connectors.email")
_LONDON = ZoneInfo("Europe/London")


def _address(value: str) -> str:
    if "@" not in parseaddr(value)[1]:
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


class EmailOptions(ConnectorOptions):
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # 465 with ssl, 587 with starttls, else 25
    starttls: bool = False
    ssl: bool = False
    # a private CA bundle (PEM) for a council relay whose certificate a public CA did not sign
    ca_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    from_address: str
    to: list[str] = Field(min_length=1)
    subject: str = Field(min_length=1)  # Jinja2, rendered with `record` and `context`
    reply_to: str | None = None  # Jinja2; left out when it renders empty
    template: str | None = None  # a file under connectors/templates/
    body_template: str | None = None  # or the body inline
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    helo_name: str | None = None

    @field_validator("username", "password_env", "ca_file", "reply_to", "helo_name", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # `${SMTP_USERNAME:-}` in the file leaves an empty string where nothing is configured
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @model_validator(mode="after")
    def _consistent(self) -> EmailOptions:
        if (self.template is None) == (self.body_template is None):
            raise ValueError("give exactly one of template (a file name) or body_template (inline)")
        if self.ssl and self.starttls:
            raise ValueError("choose ssl (implicit TLS, port 465) or starttls (port 587), not both")
        if self.username and not self.password_env:
            raise ValueError("username needs password_env, the environment variable holding the password")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.ssl else 587 if self.starttls else 25)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, never a blank
        autoescape=False,  # plain text, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["uk_date"] = uk_date
    return env


def uk_date(value: Any) -> str:
    """`2026-11-23` -> `23/11/2026`; a date-time is shown in UK time, `23/11/2026 10:15`; else as is."""
    if not isinstance(value, str) or not value:
        return "" if value is None else str(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if len(value) <= 10:
        return parsed.strftime("%d/%m/%Y")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_LONDON)
    return parsed.strftime("%d/%m/%Y %H:%M")


class EmailConnector(Connector):
    options_model = EmailOptions
    sends_files = True
    options: EmailOptions

    def __init__(self, name: str, options: EmailOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._jinja = _environment()
        try:
            self._subject = self._jinja.from_string(options.subject)
            self._reply_to = self._jinja.from_string(options.reply_to) if options.reply_to else None
            if options.template is not None:
                self._body = self._jinja.get_template(options.template)
            else:
                self._body = self._jinja.from_string(options.body_template or "")
        except jinja2.TemplateNotFound as exc:
            known = ", ".join(sorted(p.name for p in TEMPLATES_DIR.glob("*.txt"))) or "none"
            raise ConfigError(f"connector {name!r}: no e-mail template {exc.name!r} in {TEMPLATES_DIR} (known: {known})") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"connector {name!r}: e-mail template {exc.name or 'subject'} line {exc.lineno}: {exc.message}") from None
        self._helo = options.helo_name or socket.gethostname()  # getfqdn() may wait on DNS
        self._domain = options.from_address.rpartition("@")[2].strip(" >") or "hub.invalid"

    # -- the message ----------------------------------------------------------------------

    def message_id(self, idempotency_key: str) -> str:
        """The same key always gives the same Message-ID, so a resend is recognisably the same message."""
        return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{self._domain}>"

    def build_message(self, record: Mapping[str, Any], context: DeliveryContext, with_files: bool = True) -> EmailMessage:
        """The message for this record; files in it (`attach: file`) are attached after record.json
        and record.csv, which, like the body, are made from the rest. `with_files=False` leaves the
        files out (a preview lists them instead of reading their bytes)."""
        record, files = files_in(record)
        variables = {"record": record, "context": asdict(context)}
        try:
            subject = " ".join(self._subject.render(variables).split())  # no line breaks in a header
            body = self._body.render(variables)
            reply_to = " ".join(self._reply_to.render(variables).split()) if self._reply_to else ""
        except jinja2.TemplateError as exc:
            raise PermanentError(f"e-mail template {self.options.template or 'inline'} cannot render this record: {exc}") from None
        message = EmailMessage(policy=SMTP_POLICY)
        message["From"] = self.options.from_address
        message["To"] = ", ".join(self.options.to)
        message["Subject"] = subject or f"Form {context.form_id} {context.reference}"
        if reply_to and "@" in parseaddr(reply_to)[1]:
            message["Reply-To"] = reply_to
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = self.message_id(context.idempotency_key)
        message["X-Hub-Reference"] = context.reference
        message["X-Idempotency-Key"] = context.idempotency_key
        message["X-Hub-Form"] = context.form_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to the hub
        message.set_content(body)
        document = json.dumps(record, ensure_ascii=False, indent=2).encode()
        message.add_attachment(document, maintype="application", subtype="json", filename="record.json")
        # with a BOM, Excel reads UTF-8 (Welsh names) correctly
        table = record_csv(record).encode("utf-8-sig")
        message.add_attachment(table, maintype="text", subtype="csv", filename="record.csv", params={"charset": "utf-8"})
        if with_files:
            for _, attached in files:
                maintype, _, subtype = attached.media_type.partition("/")
                if not (maintype and subtype):
                    maintype, subtype = "application", "octet-stream"
                message.add_attachment(attached.read(), maintype=maintype, subtype=subtype, filename=attached.filename)
        return message

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        """The message `send` hands to SMTP, as text (no credential is part of a message)."""
        message = self.build_message(record, context, with_files=False)
        target = f"SMTP {self.options.host}:{self.options.effective_port} to {', '.join(self.options.to)}"
        note = "the Date header and the MIME boundaries are made afresh at each send"
        body = message.as_string()
        files = [attached for _, attached in files_in(record)[1]]
        if files:
            body += "\n" + _listing(files)
            note += "; the files listed at the end are attached after record.csv, their bytes not shown"
        return Preview("e-mail", target, (), "message/rfc822", body, note)

    def validate_record(self, record: Mapping[str, Any]) -> list[str]:
        sample = DeliveryContext("HUB-0000000000", self.name, 0, f"HUB-0000000000/{self.name}", 1, "tenant", "form")
        try:
            self.build_message(record, sample, with_files=False)
        except DeliveryError as exc:
            return [exc.reason]
        except (TypeError, ValueError) as exc:
            return [f"the record cannot be attached as JSON: {exc}"]
        return []

    # -- SMTP -----------------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.options.ca_file)

    def _open(self) -> smtplib.SMTP:
        o = self.options
        try:  # the name is resolved and checked just before smtplib connects to it
            check_host(o.host, o.effective_port, self.outbound)
        except OutboundRefused as exc:
            raise OutboundRefused(f"{self.name} was not called: {exc.reason}") from None
        password = self.secrets.env(o.password_env) if o.username and o.password_env else None
        smtp: smtplib.SMTP
        if o.ssl:
            smtp = smtplib.SMTP_SSL(o.host, o.effective_port, local_hostname=self._helo, timeout=o.timeout_seconds, context=self._tls())
        else:
            smtp = smtplib.SMTP(o.host, o.effective_port, local_hostname=self._helo, timeout=o.timeout_seconds)
        try:
            smtp.ehlo()
            if o.starttls:
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if o.username and password is not None:
                smtp.login(o.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        message = self.build_message(record, context)
        self.deliver(message, self.options.to)
        return Outcome(external_reference=message["Message-ID"])

    def deliver(self, message: EmailMessage, to: Sequence[str]) -> None:
        """Sends a ready message to `to` through this connector's mail server (the hub's own alerts
        use it too); raises TransientError or PermanentError, as `classify` says."""
        try:
            smtp = self._open()
        except (OSError, smtplib.SMTPException) as exc:
            raise self.classify(exc) from None
        try:
            refused = smtp.send_message(message, self.options.from_address, list(to))
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise self.classify(exc) from None
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()  # the message was already accepted: a lost QUIT must not cause a resend
        if refused:
            # some recipients took it; resending would duplicate theirs, so the rest are logged
            log.warning("email_recipients_refused", connector=self.name, refused={k: v[0] for k, v in refused.items()})

    def classify(self, exc: BaseException) -> DeliveryError:
        """TransientError or PermanentError for an SMTP, TLS or socket failure, with a plain reason."""
        where = f"mail server {self.options.host}:{self.options.effective_port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            answers = {addr: (code, _text(msg)) for addr, (code, msg) in exc.recipients.items()}
            detail = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in answers.items())
            if any(400 <= code < 500 for code, _ in answers.values()):
                return TransientError(f"{where} deferred the recipients: {detail}")
            return PermanentError(f"{where} refused the recipients: {detail}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if isinstance(exc.__context__, TimeoutError):  # smtplib reports a read timeout as a disconnect
                return TransientError(f"no reply from {where} within {self.options.timeout_seconds:g} s")
            return TransientError(f"{where} closed the connection")
        if isinstance(exc, smtplib.SMTPResponseException):
            what = "rejected the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "answered"
            reason = f"{where} {what}: {exc.smtp_code} {_text(exc.smtp_error)}"
            return PermanentError(reason) if 500 <= exc.smtp_code < 600 else TransientError(reason)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentError(f"{where} does not support what the connector needs: {exc}")
        if isinstance(exc, smtplib.SMTPException):
            return PermanentError(f"{where}: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(f"{where} has a certificate that is not trusted: {getattr(exc, 'verify_message', None) or exc}")
        if isinstance(exc, ssl.SSLError):
            return TransientError(f"TLS with {where} failed: {getattr(exc, 'reason', None) or type(exc).__name__}")
        if isinstance(exc, TimeoutError):
            return TransientError(f"no reply from {where} within {self.options.timeout_seconds:g} s")
        if isinstance(exc, OSError):
            return TransientError(f"could not reach {where}: {exc.strerror or type(exc).__name__}")
        return TransientError(f"{where}: unexpected {type(exc).__name__}")

    # -- operations -----------------------------------------------------------------------

    def check(self) -> Health:
        try:
            smtp = self._open()
        except (OSError, smtplib.SMTPException) as exc:
            return Health(False, self.classify(exc).reason)
        except ConfigError as exc:  # the password's variable is not set
            return Health(False, str(exc))
        except OutboundRefused as exc:
            return Health(False, exc.reason)
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
        steps = ["connected"] + (["TLS"] if self.options.ssl or self.options.starttls else []) + (["logged in"] if self.options.username else [])
        return Health(True, f"{', '.join(steps)} to {self.options.host}:{self.options.effective_port}")

    def describe(self) -> str:
        o = self.options
        security = "implicit TLS" if o.ssl else "STARTTLS" if o.starttls else "no TLS"
        auth = f"login as {o.username} (password from ${o.password_env})" if o.username else "no login"
        body = f"template {o.template}" if o.template else "inline body template"
        return (f"{self.name}: e-mail via SMTP {o.host}:{o.effective_port} ({security}, {auth}) from {o.from_address} "
                f"to {', '.join(o.to)}; {body}; record attached as record.json and record.csv; timeout {o.timeout_seconds:g} s")


def record_csv(record: Mapping[str, Any]) -> str:
    """The record as one header row and one value row: nested keys as `a.b.c`, lists of plain values
    joined with "; ", lists of objects numbered from 1 (`occupants.1.name`)."""
    cells: dict[str, str] = {}
    _flatten(record, "", cells)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(cells.keys())
    writer.writerow(cells.values())
    return out.getvalue()


def _flatten(value: Any, prefix: str, cells: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else str(key), cells)
        if not value and prefix:
            cells[prefix] = ""
    elif isinstance(value, list) and any(isinstance(item, (Mapping, list)) for item in value):
        for index, item in enumerate(value, 1):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), cells)
    elif isinstance(value, list):
        cells[prefix or "value"] = "; ".join(_cell(item) for item in value)
    else:
        cells[prefix or "value"] = _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # a resident's text starting like a formula must not run as one when staff open the file
        # in a spreadsheet (OWASP "CSV injection"): a leading apostrophe makes it plain text
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    return str(value)


def _listing(files: Sequence[AttachedFile]) -> str:
    """The files a message carries by name, type and size, for a preview (never their bytes)."""
    lines = [f"Attached files ({len(files)}):"]
    lines += [f"  {f.filename}  {f.media_type}  {f.size} bytes" for f in files]
    return "\n".join(lines) + "\n"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())
    return text[:200] + ("…" if len(text) > 200 else "")
