"""The e-mail connector offline: the message a team receives, its attachments, its templates, and how
every SMTP failure is sorted into retry or park."""

from __future__ import annotations

import csv
import io
import json
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest

from connectors.base import DeliveryContext, Secrets
from connectors.email import EmailConnector, record_csv
from connectors.registry import ConnectorRegistry
from hub.config.files import ConnectorConfig, load_config
from hub.delivery.mapping_cases import mapping_cases
from hub.errors import ConfigError, PermanentError, TransientError

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "mappings"
REGISTRY = ConnectorRegistry.from_entry_points()


def connector(**options: Any) -> EmailConnector:
    base = {
        "host": "127.0.0.1",
        "from_address": "Hub <forms-hub@eastmoor.example.org>",
        "to": ["counciltax@eastmoor.example.org"],
        "subject": "Moving: {{ record.name }} {{ context.reference }}",
        "body_template": "Name: {{ record.name }}\nReference: {{ context.reference }}\n",
    }
    config = ConnectorConfig(name="mailbox", type="email", options={**base, **options})
    built = REGISTRY.build(config, Secrets({}))
    assert isinstance(built, EmailConnector)
    return built


def context(reference: str = "EDC-4M7QK2XW9A", attempt: int = 1) -> DeliveryContext:
    return DeliveryContext(reference, "mailbox", 7, f"{reference}/mailbox", attempt, "eastmoor", "council-tax-moving-home")


def shipped(name: str) -> EmailConnector:
    config = load_config(ROOT / "config", {})
    built = REGISTRY.build(config.connectors[name], Secrets({}))
    assert isinstance(built, EmailConnector)
    return built


def case_record(form: str, connector_name: str, case: str) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((CASES / f"{form}.{connector_name}.cases" / f"{case}.json").read_text())["expected"]
    return expected


def attachment(message: Any, filename: str) -> bytes:
    part = next(p for p in message.iter_attachments() if p.get_filename() == filename)
    content: bytes = part.get_payload(decode=True)
    return content


def test_a_resend_of_the_same_delivery_has_the_same_message_id_and_other_deliveries_another() -> None:
    mail = connector()
    first = mail.build_message({"name": "Priya Raman"}, context(attempt=1))["Message-ID"]
    again = mail.build_message({"name": "Priya Raman"}, context(attempt=3))["Message-ID"]
    other = mail.build_message({"name": "Priya Raman"}, context("EDC-8TZC3RNV6B"))["Message-ID"]
    assert first == again != other
    assert first.startswith("<") and first.endswith("@eastmoor.example.org>") and len(first.split("@")[0]) == 33


def test_the_message_names_its_reference_and_idempotency_key_in_headers() -> None:
    message = connector().build_message({"name": "Priya Raman"}, context())
    assert message["X-Hub-Reference"] == "EDC-4M7QK2XW9A"
    assert message["X-Idempotency-Key"] == "EDC-4M7QK2XW9A/mailbox"
    assert message["From"] == "Hub <forms-hub@eastmoor.example.org>"
    assert message["To"] == "counciltax@eastmoor.example.org"
    assert message["Auto-Submitted"] == "auto-generated"


def test_subject_and_body_are_rendered_from_the_record_and_the_delivery() -> None:
    message = connector().build_message({"name": "Siân Ŵyn"}, context())
    assert message["Subject"] == "Moving: Siân Ŵyn EDC-4M7QK2XW9A"
    assert message.get_body(("plain",)).get_content() == "Name: Siân Ŵyn\nReference: EDC-4M7QK2XW9A\n"


def test_a_line_break_typed_by_a_resident_cannot_break_out_of_the_subject() -> None:
    message = connector().build_message({"name": "Evil\r\nBcc: everyone@example.org"}, context())
    assert message["Subject"] == "Moving: Evil Bcc: everyone@example.org EDC-4M7QK2XW9A"
    assert message["Bcc"] is None


def test_the_record_is_attached_as_json_and_as_a_one_row_csv_with_flattened_keys() -> None:
    record = case_record("council-tax-moving-home", "council-tax-email", "moving-within-student")
    message = shipped("council-tax-email").build_message(record, context(record["reference"]))
    assert json.loads(attachment(message, "record.json")) == record
    table = attachment(message, "record.csv").decode("utf-8-sig")
    header, values = list(csv.reader(io.StringIO(table)))
    row = dict(zip(header, values))
    assert row["name"] == "Seán O'Neill"
    assert row["previous_address.uprn"] == "100023336958"
    assert row["occupants.2.name"] == "Niamh O'Neill" and row["occupants.2.full_time_student"] == "true"
    assert row["phone"] == "'+44 7700 900881"  # made plain text, or a spreadsheet reads a formula


def test_lists_of_plain_values_are_joined_in_one_csv_cell() -> None:
    header, values = list(csv.reader(io.StringIO(record_csv({"kinds": ["income", "rent"], "empty": {}, "n": None, "x": 2.5}))))
    assert dict(zip(header, values)) == {"kinds": "income; rent", "empty": "", "n": "", "x": "2.5"}


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-2+3", "@SUM(A1)", "\tx"])
def test_text_that_a_spreadsheet_would_run_as_a_formula_is_made_plain_text(text: str) -> None:
    header, values = list(csv.reader(io.StringIO(record_csv({"notes": text}))))
    assert values == ["'" + text]


def test_the_shipped_templates_show_dates_as_a_person_reads_them_in_uk_time() -> None:
    record = case_record("council-tax-moving-home", "council-tax-email", "moving-in-uprn")
    message = shipped("council-tax-email").build_message(record, context(record["reference"]))
    body = message.get_body(("plain",)).get_content()
    assert "Moving date:     14/11/2026" in body
    assert "Submitted:       23/11/2026 10:15" in body
    assert "  - Arjun Raman, born 17/09/1989" in body
    assert message["Subject"] == "Council tax: Moving into the district from 14/11/2026 - Priya Raman - EDC-4M7QK2XW9A"
    assert message["Reply-To"] == "priya.raman@example.org"


def test_anonymous_feedback_has_no_reply_to_and_says_it_cannot_be_answered() -> None:
    record = case_record("complaint-or-compliment", "feedback-email", "comment-anonymous")
    message = shipped("feedback-email").build_message(record, context(record["reference"]))
    assert message["Reply-To"] is None
    assert "Sent anonymously: there is no way to reply." in message.get_body(("plain",)).get_content()
    assert message["Subject"] == f"Comment about Parks and leisure (4/5) - {record['reference']}"


def test_a_field_the_template_needs_but_the_record_lacks_parks_the_delivery_and_fails_the_config_check() -> None:
    mail = connector(body_template="Account: {{ record.acount_number }}")
    with pytest.raises(PermanentError, match="acount_number"):
        mail.build_message({"name": "Priya Raman", "account_number": "60012345"}, context())
    assert any("acount_number" in problem for problem in mail.validate_record({"name": "Priya Raman", "account_number": "60012345"}))


def test_every_mapping_case_of_a_shipped_email_connector_renders() -> None:
    config = load_config(ROOT / "config", {})
    emails = {name for name, c in config.connectors.items() if c.type == "email"}
    cases = [case for case in mapping_cases(CASES, ROOT / "schemas") if case.key[1] in emails]
    assert len({case.key[1] for case in cases}) == len(emails) >= 2
    for case in cases:
        assert shipped(case.key[1]).validate_record(case.expected) == [], case.path


def test_a_template_that_does_not_parse_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="line 1"):
        connector(subject="Moving {{ record.name ")


def test_an_unknown_template_file_is_a_configuration_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no e-mail template 'council-tax.txt'.*council-tax-moving-home\.txt"):
        connector(body_template=None, template="council-tax.txt")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"ssl": True, "starttls": True}, "not both"),
        ({"username": "hub"}, "password_env"),
        ({"template": "council-tax-moving-home.txt"}, "exactly one"),
        ({"to": ["not an address"]}, "not an e-mail address"),
        ({"password": "hunter2"}, "Extra inputs are not permitted"),
    ],
)
def test_options_that_cannot_work_are_refused_when_the_configuration_loads(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        connector(**options)


def test_an_empty_username_from_the_environment_means_no_login_and_ports_follow_the_security() -> None:
    assert connector(username="", password_env="SMTP_PASSWORD").options.username is None
    assert connector().options.effective_port == 25
    assert connector(starttls=True).options.effective_port == 587
    assert connector(ssl=True).options.effective_port == 465


def test_a_missing_password_variable_is_a_configuration_error_before_any_connection() -> None:
    mail = connector(username="hub", password_env="SMTP_PASSWORD_NOT_SET", host="192.0.2.1")
    with pytest.raises(ConfigError, match="SMTP_PASSWORD_NOT_SET"):
        mail.send({"name": "x"}, context())


def _refused(code: int) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({"counciltax@eastmoor.example.org": (code, b"Mailbox unavailable")})


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (_refused(550), PermanentError, "refused the recipients: counciltax@eastmoor.example.org: 550 Mailbox unavailable"),
        (_refused(451), TransientError, "deferred the recipients"),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"), PermanentError, "rejected the login: 535"),
        (smtplib.SMTPDataError(451, b"4.3.0 Try again later"), TransientError, "answered: 451 4.3.0 Try again later"),
        (smtplib.SMTPDataError(554, b"5.6.0 Message rejected"), PermanentError, "answered: 554"),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", "forms-hub@eastmoor.example.org"), PermanentError, "553"),
        (smtplib.SMTPConnectError(421, b"Too many connections"), TransientError, "421 Too many connections"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), TransientError, "closed the connection"),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), PermanentError, "STARTTLS"),
        (TimeoutError("timed out"), TransientError, "no reply from mail server 127.0.0.1:25 within 30 s"),
        (ConnectionRefusedError(111, "Connection refused"), TransientError, "could not reach mail server 127.0.0.1:25: Connection refused"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), PermanentError, "not trusted"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_smtp_failures_are_retried_or_parked_by_what_the_server_said(error: BaseException, kind: type, reason: str) -> None:
    classified = connector().classify(error)
    assert type(classified) is kind
    assert reason in classified.reason


def test_describe_says_where_mail_goes_without_any_secret() -> None:
    text = connector(username="hub", password_env="SMTP_PASSWORD", starttls=True, template="council-tax-moving-home.txt", body_template=None).describe()
    assert "STARTTLS" in text and "$SMTP_PASSWORD" in text and "counciltax@eastmoor.example.org" in text
