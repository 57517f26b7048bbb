"""Process settings, read once from the environment (HUB_*) and passed in.

Nothing else in the hub reads the environment: this is the one place. A `HUB_` variable that is
not a setting is refused (a typo such as HUB_DATABSE_URL must not pass silently), in every
environment; `hub.config.production` says what a production start refuses besides.

Each secret (SECRET_SETTINGS) may instead be read from a file: HUB_<NAME>_FILE holds its path, as
Kubernetes and compose mount secrets; the file's content is the value, trailing newline stripped.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.config.bundled import PACKAGE_ROOT, default_data_dir, folder
from hub.errors import ConfigError

# the source checkout, or site-packages when installed: only for locating what ships with the hub
REPO_ROOT = PACKAGE_ROOT
ENV_PREFIX = "HUB_"


# the settings that hold a secret (a password inside a URL counts): each also reads HUB_<NAME>_FILE
SECRET_SETTINGS = (
    "database_url", "broker_url", "encryption_keys", "index_key", "oidc_client_secret", "session_key",
    "demo_api_key", "pay_api_key", "notify_api_key", "attachment_url_key",
)
FILE_SUFFIX = "_FILE"


class UnknownSetting(ValueError):
    """A HUB_ variable in the environment that names no setting."""


def file_variable(name: str) -> str:
    """The environment variable naming the file a secret setting is read from: HUB_<NAME>_FILE."""
    return f"{ENV_PREFIX}{name}{FILE_SUFFIX}".upper()


def _secret_files(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with each secret given as HUB_<NAME>_FILE read from its file. An unreadable file is an
    error naming the variable and the path (never the content)."""
    environ = {name.upper(): value for name, value in os.environ.items()}
    for name in SECRET_SETTINGS:
        path = environ.get(file_variable(name))
        if path is None:
            continue
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ValueError(f"{file_variable(name)}: cannot read the secret file {path}: {reason}") from None
        # given both ways, the file wins; production refuses the pair (secrets_given_twice)
        data[name] = content.rstrip("\r\n")
    return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # production refuses demo keys, development keys and default secrets (hub.config.production)
    environment: Literal["development", "production"] = "development"
    # the demo's SQLite file and the development keys made when none are set
    data_dir: Path = Field(default_factory=default_data_dir)
    # empty: a SQLite file in data_dir
    database_url: str = ""
    broker_url: str = "memory://"
    config_dir: Path = Field(default_factory=lambda: folder("config"))
    schemas_dir: Path = Field(default_factory=lambda: folder("schemas"))
    mappings_dir: Path = Field(default_factory=lambda: folder("mappings"))
    # a council's own copies of the public standards (standards:/// URIs); unset: those shipped
    standards_dir: Path | None = None
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # submissions one api process takes in at once; past it intake answers 503 with Retry-After
    # (load shed, nothing stored) rather than letting every answer wait longer (docs/scale.md)
    intake_max_in_flight: int = Field(default=256, gt=0)
    # one attachment's body (POST /v1/attachments), streamed: refused (413) as soon as it passes this
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # clamd's Unix socket for the attachment virus scan; unset: attachments are stored "unscanned"
    clamd_socket: str | None = None
    clamd_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # where attachment blobs live: files under data_dir/attachments, or an S3-compatible bucket
    # (credentials from boto3's own AWS_* variables or instance role; never a HUB_ setting)
    attachment_store: Literal["filesystem", "s3"] = "filesystem"
    attachment_s3_bucket: str | None = None
    attachment_s3_endpoint_url: str | None = None
    # signs the expiring content links back offices fetch (Open311 media_url); unset: derived
    # from HUB_INDEX_KEY. Links work for attachment_url_seconds.
    attachment_url_key: SecretStr | None = None
    attachment_url_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    # how often the worker rescans files stored while clamd did not answer; their deliveries wait as long
    attachment_rescan_seconds: float = Field(default=30.0, gt=0)
    # a multipart submission (answers + files in one request) is refused (413) over this in total
    attachment_inline_max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # an upload no submission names is deleted (row and blob) by the retention run once this old
    attachment_unlinked_max_age_hours: float = Field(default=24.0, gt=0)
    # checked before schema validation, so a hostile payload costs little
    max_depth: int = Field(default=32, gt=0, le=1000)
    max_string_length: int = Field(default=100_000, gt=0)
    log_level: str = "info"
    log_json: bool = True

    exchange: str = "hub.deliveries"
    queue_prefix: str = "hub."
    # quorum queues on RabbitMQ; the in-process transport ignores queue arguments
    quorum_queues: bool = True
    delivery_limit: int = Field(default=20, gt=0)
    broker_connect_timeout: float = Field(default=5.0, gt=0)

    relay_batch: int = Field(default=500, gt=0)
    # deliveries for one connector that share a message: fewer messages for the broker to store,
    # and for the relay and workers to frame and acknowledge (1: one message per delivery)
    relay_deliveries_per_message: int = Field(default=10, gt=0, le=100)
    relay_sweep_seconds: float = Field(default=1.0, gt=0)
    worker_prefetch: int = Field(default=16, gt=0)

    # personal data: Fernet keys for payloads at rest, newest first (comma or space separated);
    # HMAC key for the index of residents' identifiers. Unset: development keys in var/.
    encryption_keys: SecretStr | None = None
    index_key: SecretStr | None = None
    # front-end keys made by `hub clients create` are read from the database through a cache
    # this many seconds old at most (so a revoked key stops working within it)
    client_cache_seconds: float = Field(default=5.0, ge=0)
    # after a stored client's key is rotated, the old key keeps working this many hours by default
    # (the console may choose another grace period, up to 30 days), so the front end can switch over
    client_key_grace_hours: int = Field(default=24, ge=0, le=720)
    # rate limits (hub.api.ratelimit), in the `limits` notation ("100/second;3000/minute"); a client
    # or tenant in the configuration files may set its own `rate_limit`; counted per api replica
    client_rate_limit: str = "100/second"
    tenant_rate_limit: str = "300/second"
    # failed API-key or staff-token checks from one address before it is refused (429), and the
    # first wait; each further try while refused doubles the wait, up to auth_failure_max_wait
    auth_failure_limit: str = "20/minute"
    auth_failure_max_wait: float = Field(default=3600.0, gt=0)

    # staff sign-in: "local" tokens from the staff section (development), "oidc" through the
    # council's identity provider, or both
    staff_auth: Literal["local", "oidc", "both"] = "local"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    # signs the hub's own staff session tokens after an OIDC sign-in
    session_key: SecretStr | None = None
    session_seconds: int = Field(default=8 * 3600, gt=0)
    # the staff console's cookie session: ends after this long unused, and this long after sign-in
    console_idle_minutes: int = Field(default=30, gt=0)
    console_absolute_hours: int = Field(default=8, gt=0)

    # background work in `hub worker`: retention purge, status polling, webhook sending
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    poll_interval_seconds: float = Field(default=300.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)

    # e-mail alerts to tenants' staff (docs/alerts.md): after a mail about a connector, further
    # events wait this long and go out as one summary; the worker looks for summaries due this often;
    # the daily digest is sent once the UK clock passes this hour, looked for this often
    alert_window_seconds: float = Field(default=900.0, gt=0)
    alert_flush_seconds: float = Field(default=30.0, gt=0)
    digest_hour: int = Field(default=7, ge=0, le=23)
    digest_check_seconds: float = Field(default=300.0, gt=0)
    # residents' acknowledgements and closing messages through GOV.UK Notify (docs/notifications.md):
    # the service's API key (`<name>-<service id>-<secret>`); unset: no message is sent
    notify_api_key: SecretStr | None = None
    notify_base_url: str = "https://api.notifications.service.gov.uk"
    # the first retry of a message Notify could not take waits up to this long, doubling each time (to an hour)
    notify_retry_base_seconds: float = Field(default=30.0, gt=0)

    demo_api_key: str | None = None
    demo_port: int = 8000
    # the demo's identity provider (simulators/identity.py): 0 takes a free port
    demo_idp_port: int = Field(default=0, ge=0, le=65535)

    # payment before delivery (docs/payments.md): GOV.UK Pay's API and the service's API key
    pay_url: str = "https://publicapi.payments.service.gov.uk"
    pay_api_key: SecretStr | None = None
    pay_timeout_seconds: float = Field(default=10.0, gt=0)
    # how often the worker asks GOV.UK Pay about payments not yet finished
    pay_poll_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        known = {f"{ENV_PREFIX}{name}".upper() for name in cls.model_fields}
        known |= {file_variable(name) for name in SECRET_SETTINGS}
        unknown = sorted(name for name in os.environ if name.upper().startswith(ENV_PREFIX) and name.upper() not in known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name.upper(), known, n=1)
                hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
            raise UnknownSetting(
                f"unknown setting(s) in the environment: {', '.join(hints)}. Every HUB_ variable must be a setting "
                "of the hub (README: settings); remove or rename it."
            )
        return _secret_files(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'hub.db'}"
        return self


    def secrets_given_twice(self) -> list[str]:
        """The secret settings given both as HUB_<NAME> and as HUB_<NAME>_FILE (production refuses
        them: which of the two is meant cannot be told)."""
        environ = {name.upper() for name in os.environ}
        return [f"{ENV_PREFIX}{name}".upper() for name in SECRET_SETTINGS
                if f"{ENV_PREFIX}{name}".upper() in environ and file_variable(name) in environ]


def load_settings() -> Settings:
    """The process's settings from its environment; ConfigError says plainly what is wrong
    (a command prints it and exits, rather than showing a traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{ENV_PREFIX}{where.upper()}: {message}" if where else message)
        raise ConfigError("\n".join(problems)) from None
