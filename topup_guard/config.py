"""Settings from environment variables (pydantic-settings).

The flat variable names are a public contract: ``VONAGE_API_KEY``, ``VONAGE_API_SECRET`` and
``TOPUP_GUARD_<NAME>`` for everything else. Every secret also has a ``<NAME>_FILE`` variant whose
value is a path to read the secret from, as Kubernetes and Docker mount secrets.

Each field's docstring states its unit and default; the README's configuration reference is
generated from them (``python -m topup_guard.docs``) and a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from topup_guard.envcheck import sentence, unknown_variables
from topup_guard.errors import ConfigError

PREFIX = "TOPUP_GUARD_"
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Fields whose env names do not follow TOPUP_GUARD_<FIELD>.
_SPECIAL_NAMES = {"api_key": "VONAGE_API_KEY", "api_secret": "VONAGE_API_SECRET"}
DEMO_API_KEY = "demo1234"
DEMO_API_SECRET = "DemoSecret1"  # noqa: S105 - documented simulator default, not a real secret
DEMO_TRX = "8ef2447e69604f642ae59363aa5f781b"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1); False for the
    wildcard ``0.0.0.0`` / ``::``, an empty host and every other name or address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return _SPECIAL_NAMES.get(field, PREFIX + field.upper())


class Settings(BaseSettings):
    """Everything the guard and the CLI read from the environment."""

    model_config = SettingsConfigDict(
        extra="ignore",
        use_attribute_docstrings=True,
        validate_default=True,
        frozen=True,
        # NaN passes no comparison and inf passes every lower bound (an infinite poll interval
        # would make the liveness limit infinite): refuse both for every number.
        allow_inf_nan=False,
    )

    # --- Vonage account -------------------------------------------------------------------
    api_key: str | None = Field(None, examples=["abcd1234"])
    """The Vonage API key (`VONAGE_API_KEY`). Required by every command that calls Vonage."""
    api_secret: SecretStr | None = Field(None, examples=["Sup3rSecret"])
    """The Vonage API secret. Secret; `VONAGE_API_SECRET_FILE` reads it from a file."""
    trx: SecretStr | None = Field(None, examples=["8ef2447e69604f642ae59363aa5f781b"])
    """Reference of the payment on which auto-reload was enabled; required to top up. Secret."""
    rest_url: str = Field("https://rest.nexmo.com", examples=["https://rest.nexmo.com"])
    """Base URL of Vonage's REST host (balance, top-up, settings). Default https://rest.nexmo.com."""
    api_url: str = Field("https://api.nexmo.com", examples=["https://api.nexmo.com"])
    """Base URL of Vonage's API host (secrets, subaccounts). Default https://api.nexmo.com."""
    http_timeout: float = Field(10.0, gt=0, le=120, examples=["10"])
    """Seconds before one Vonage request is given up. Default 10."""

    # --- Policy ---------------------------------------------------------------------------
    min_balance: Decimal = Field(Decimal("10"), ge=0, examples=["10"])
    """EUR floor the balance must never be forecast to cross. Keep it above the auto-reload
    threshold of the Vonage dashboard so the two do not race. Default 10."""
    horizon: float = Field(600.0, gt=0, examples=["600"])
    """Seconds of look-ahead for warnings about exhaustion while the guard cannot act.
    Default 600 (Vonage's worst-case auto-reload check interval)."""
    poll_interval: float = Field(60.0, ge=0.5, examples=["60"])
    """Longest time in seconds between two balance polls, used while healthy. Default 60."""
    poll_min: float = Field(5.0, ge=0.5, examples=["5"])
    """Shortest time in seconds between two balance polls, used as exhaustion nears. Default 5."""
    poll_interval_with_signal: float | None = Field(None, ge=0.5, examples=["300"])
    """Longest seconds between two balance polls while sender signals are flowing. Default unset
    (`TOPUP_GUARD_POLL_INTERVAL`)."""
    topup_amount: Decimal | None = Field(None, gt=0, examples=["50"])
    """EUR one top-up adds (the auto-reload amount). Default unset: learnt from confirmed
    top-ups; until then the guard tops up once at a time."""
    topup_latency: float = Field(5.0, ge=0, examples=["5"])
    """Seconds a top-up takes to show in the balance. Default 5."""
    rate_window_short: float = Field(300.0, gt=0, examples=["300"])
    """Seconds of history for the short-window spend rate (reacts to bursts). Default 300."""
    rate_window_long: float = Field(3600.0, gt=0, examples=["3600"])
    """Seconds of history for the long-window spend rate (steady demand). Default 3600."""
    safety_margin: float = Field(30.0, ge=0, examples=["30"])
    """Extra seconds of spend the guard keeps in hand beyond next poll + latency. Default 30."""
    settle_window: float = Field(60.0, gt=0, examples=["60"])
    """Upper bound in seconds on watching for the credit of an ambiguous top-up before calling
    it unconfirmed; the guard watches for a few times the credit latency it has observed
    (at least `TOPUP_GUARD_TOPUP_LATENCY`), at most this. Default 60."""
    on_doubt: Literal["topup", "wait"] = Field("topup", examples=["topup"])
    """While an ambiguous top-up is unsettled: `topup` tops up again (a new attempt, within the
    caps) when the balance would reach the floor before verification ends; `wait` never does.
    Default topup."""
    min_headroom: Decimal | None = Field(None, ge=0, examples=["50"])
    """EUR the guard keeps in hand above the floor at least, so that it can sleep a whole
    `TOPUP_GUARD_POLL_INTERVAL` through a burst of that size. Default unset: one top-up amount
    (0: only what the burst rate could spend in one poll interval + latency + margin)."""
    max_balance: Decimal | None = Field(None, gt=0, examples=["500"])
    """EUR the guard will build up at most with headroom top-ups; when it binds the guard polls
    faster instead and says so (top-ups that keep the floor are still made). Default unset."""
    max_plausible_balance: Decimal = Field(Decimal("1000000"), gt=0, examples=["1000000"])
    """EUR beyond which a balance answer is a misread (counted and alerted, never believed).
    Default 1000000."""
    max_topups_per_hour: int = Field(4, ge=0, examples=["4"])
    """Most top-ups in any rolling hour (counted from the ledger). Default 4."""
    max_topups_per_day: int = Field(24, ge=0, examples=["24"])
    """Most top-ups in any rolling 24 hours (counted from the ledger). Default 24."""
    max_daily_amount: Decimal = Field(Decimal("1000"), ge=0, examples=["1000"])
    """Most EUR topped up in any rolling 24 hours (counted from the ledger). Default 1000."""
    breaker_threshold: int = Field(3, ge=1, examples=["3"])
    """Consecutive failed or unconfirmed top-ups that open the breaker. Default 3."""
    breaker_cooldown: float = Field(3600.0, ge=0, examples=["3600"])
    """Seconds the breaker stays open before one trial top-up is allowed. Default 3600."""
    dry_run: bool = Field(False, examples=["true"])
    """Decide and report everything but never call top-up. Default false."""
    state_path: Path = Field(Path("topup-guard.db"), examples=["/var/lib/topup-guard/ledger.db"])
    """Path of the SQLite ledger (the audit trail of every top-up). Default ./topup-guard.db."""

    # --- Coordination ---------------------------------------------------------------------
    redis_url: SecretStr | None = Field(None, examples=["redis://redis:6379/0"])
    """Redis shared by several guards on one account: lease, fencing and shared ledger.
    Default unset (SQLite ledger; only one replica may run). Secret (may hold a password)."""
    lease_ttl: float = Field(15.0, ge=1, examples=["15"])
    """Seconds a spending lease lasts unless renewed (renewed every third of it). Default 15."""

    # --- Fleet mode (see README "Fleet mode (subaccounts)") -------------------------------
    fleet_file: Path | None = Field(None, examples=["/etc/topup-guard/fleet.toml"])
    """TOML file of funding rules for the primary account's subaccounts (defaults, overrides by
    key or name pattern, fleet-wide caps); read and checked at start-up. Default unset (the
    configured account alone)."""

    # --- The sender's own signal (see README "The sender's own signal") -----------------
    signal_host: str = Field("127.0.0.1", examples=["127.0.0.1"])
    """Address of the sender's signal endpoint (`/v1/signals/*`). Any address that is not loopback
    needs `TOPUP_GUARD_SIGNAL_TOKEN`. Default 127.0.0.1 (a sidecar shares the pod's loopback)."""
    signal_port: int = Field(8081, ge=0, le=65535, examples=["8081"])
    """Port of the sender's signal endpoint; 0 turns it off. Default 8081."""
    signal_token: SecretStr | None = Field(None, examples=["k7Vq2xN9pLr4Tz8w"])
    """Bearer token senders must present (`Authorization: Bearer …`) to post signals. Secret.
    Default unset (only allowed while the signal endpoint listens on loopback)."""

    # --- Notifications and operations -----------------------------------------------------
    slack_webhook_url: SecretStr | None = Field(
        None, examples=["https://hooks.slack.com/services/T000/B000/XXXX"]
    )
    """Slack incoming webhook URL. Secret. Default unset."""
    slack_token: SecretStr | None = Field(None, examples=["xoxb-your-bot-token"])
    """Slack bot token (with `TOPUP_GUARD_SLACK_CHANNEL`). Secret. Default unset."""
    slack_channel: str | None = Field(None, examples=["#sms-ops"])
    """Slack channel for the bot token. Default unset."""
    slack_repeat: float = Field(3600.0, gt=0, examples=["3600"])
    """Seconds between repeats ("Still: …") of an alert while its cause lasts, on every channel.
    Default 3600."""
    slack_queue_size: int = Field(100, ge=1, examples=["100"])
    """Messages waiting for each channel (Slack, webhook, PagerDuty) before new ones are dropped
    (and counted). Default 100."""
    notify_group_wait: float = Field(30.0, ge=0, le=600, examples=["30"])
    """Seconds an alert waits for others with the same cause before it is sent, so one cause
    makes one message (failed top-ups included). 0 sends at once. Default 30."""
    webhook_url: SecretStr | None = Field(None, examples=["https://ops.example.com/hooks/topup"])
    """Generic webhook: every message is POSTed there as JSON. Secret (URLs often carry a
    token). Default unset."""
    webhook_secret: SecretStr | None = Field(None, examples=["a-long-random-string"])
    """Key of the HMAC-SHA256 signature of each webhook body, sent as
    `X-Topup-Guard-Signature-256: sha256=<hex>`. Secret. Default unset (unsigned)."""
    pagerduty_routing_key: SecretStr | None = Field(
        None, examples=["R0123456789ABCDEF0123456789ABCDE"]
    )
    """PagerDuty Events API v2 integration (routing) key: alerts trigger and resolve incidents,
    one per cause. Secret. Default unset."""
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        examples=["https://events.eu.pagerduty.com/v2/enqueue"],
    )
    """PagerDuty Events API v2 endpoint. Default https://events.pagerduty.com/v2/enqueue."""
    account_name: str | None = Field(None, max_length=80, examples=["Acme SMS production"])
    """A display name for the Vonage account, shown in every message beside the API key.
    Default unset (the API key alone)."""
    environment: str | None = Field(None, max_length=80, examples=["production"])
    """Environment label shown in every message. Default: the Kubernetes namespace (service
    account namespace file, else `POD_NAMESPACE`), else unset."""
    health_host: str = Field("0.0.0.0", examples=["0.0.0.0"])  # noqa: S104 - probes come from kubelet
    """Address the health server listens on. Default 0.0.0.0."""
    health_port: int = Field(8080, ge=0, le=65535, examples=["8080"])
    """Port of /livez /readyz /metrics /status; 0 turns the server off. Default 8080."""
    log_format: Literal["json", "text"] = Field("json", examples=["json"])
    """`json` (one object per line) or `text`. Default json."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", examples=["INFO"])
    """DEBUG, INFO, WARNING or ERROR. The ledger does not depend on it. Default INFO."""

    @field_validator("webhook_url", "pagerduty_url")
    @classmethod
    def _http_url(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and urlsplit(str(text)).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("rest_url", "api_url")
    @classmethod
    def _plain_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Only the scheme is shown: the rest may hold credentials (refused just below).
            shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
            raise ValueError(f"must be an http(s) URL (got {shown})")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not carry credentials or a query string")
        return value.rstrip("/")

    @field_validator("signal_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("must be at least 16 printable ASCII characters without spaces")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not only when the client is built, so ``check`` refuses what ``run`` does.
        # The scheme alone is shown: the rest of the URL may hold a password.
        if value is not None:
            scheme = urlsplit(value.get_secret_value()).scheme.lower()
            if scheme not in REDIS_SCHEMES:
                shown = f"{scheme}://" if scheme else "no scheme"
                raise ValueError(f"must start with redis://, rediss:// or unix:// (got {shown})")
        return value

    @field_validator("state_path")
    @classmethod
    def _ledger_file(cls, value: Path) -> Path:
        if value.is_dir():
            raise ValueError(f"{value} is a directory; name the ledger file inside it")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.rate_window_short > self.rate_window_long:
            raise ValueError("rate_window_short: must not exceed TOPUP_GUARD_RATE_WINDOW_LONG")
        if self.poll_min > self.poll_interval:
            raise ValueError("poll_min: must not exceed TOPUP_GUARD_POLL_INTERVAL")
        if self.signal_port and self.signal_token is None and not is_loopback(self.signal_host):
            raise ValueError(
                "signal_token: required when TOPUP_GUARD_SIGNAL_HOST is not a loopback address "
                "(anyone who can reach the port could post balances)"
            )
        wait = self.poll_interval_with_signal
        if wait is not None and wait < self.poll_min:
            raise ValueError("poll_interval_with_signal: must not be below TOPUP_GUARD_POLL_MIN")
        if self.slack_token is not None and not self.slack_channel:
            raise ValueError("slack_channel: required when TOPUP_GUARD_SLACK_TOKEN is set")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only init values (already gathered from the environment by load_settings).
        return (init_settings,)

    # --- helpers --------------------------------------------------------------------------
    def require(self, *fields: str) -> None:
        """Raise ConfigError naming every listed field that is unset."""
        missing = [f for f in fields if _blank(getattr(self, f))]
        if missing:
            raise ConfigError([_problem(f, "is required but not set") for f in missing])

    def secret(self, field: str) -> str:
        value = getattr(self, field)
        if value is None:
            raise ConfigError([_problem(field, "is required but not set")])
        return str(value.get_secret_value())

    def masked(self) -> dict[str, str]:
        """Every effective setting by its variable name, secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "****** (set)"
            elif value is None:
                shown = "(unset)"
            else:
                shown = str(value).lower() if isinstance(value, bool) else str(value)
            out[env_name(name)] = shown
        return out


def _blank(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is None or (isinstance(value, str) and not value.strip())


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


SECRET_FIELDS = tuple(name for name, info in Settings.model_fields.items() if _is_secret(info))
FILE_VARIANT_FIELDS = (*SECRET_FIELDS, "api_key")
KNOWN_VARIABLES = frozenset(
    [env_name(f) for f in Settings.model_fields]
    + [env_name(f) + "_FILE" for f in FILE_VARIANT_FIELDS]
)
"""Every variable ``load_settings`` reads; any other ``TOPUP_GUARD_*`` is refused as a typo."""


def _example(field: str) -> str:
    info = Settings.model_fields.get(field)
    examples = info.examples if info is not None else None
    return str(examples[0]) if examples else "…"


def _problem(field: str, what: str) -> str:
    name = env_name(field)
    return f"{name}: {what} (for example {name}={_example(field)})"


def _gather(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in Settings.model_fields:
        name = env_name(field)
        direct = environ.get(name)
        path = environ.get(name + "_FILE") if field in FILE_VARIANT_FIELDS else None
        if direct not in (None, "") and path not in (None, ""):
            problems.append(f"{name}: set both {name} and {name}_FILE; keep one")
            continue
        if path:
            try:
                content = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(
                    f"{name}_FILE: cannot read {path} ({exc.strerror or exc.__class__.__name__})"
                    f" (for example {name}_FILE=/run/secrets/{field})"
                )
                continue
            if not content:
                # An empty mounted secret (a Secret key with no data, a file not yet written) is
                # a missing secret, not an empty one that would fail later at Vonage or Slack.
                problems.append(
                    f"{name}_FILE: {path} is empty; the file must hold the value of {name}"
                )
                continue
            values[field] = content
        elif direct not in (None, ""):
            values[field] = direct
    return values, problems


def _holds_secret(raw: object, values: Mapping[str, Any]) -> bool:
    """True when a bad value contains a configured secret (one pasted into the wrong variable):
    such a value is not shown. Long values are not shown either: they are more often a token
    than a typo."""
    text = str(raw)
    if len(text) > _SHOW_AT_MOST:
        return True
    secrets = [str(values[f]) for f in SECRET_FIELDS if f in values]
    return any(
        (len(sec) >= 4 and sec in text) or (len(text) >= 8 and text in sec) for sec in secrets
    )


_SHOW_AT_MOST = 40  # characters of a bad value shown in a problem


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``) or raise ConfigError.

    The error holds one line per problem: the variable, what is wrong (with the bad value, except
    for secrets, whose values are never echoed), a valid example. Unknown ``TOPUP_GUARD_*``
    variables are problems too, naming the closest valid one (``envcheck``).
    """
    environ = os.environ if environ is None else environ
    values, problems = _gather(environ)
    problems += unknown_variables(environ, KNOWN_VARIABLES)
    try:
        settings = Settings(**values)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            hide = field in SECRET_FIELDS or _holds_secret(err.get("input"), values)
            message = sentence(err, secret=hide)
            if not field and ":" in message:  # model-level rule "field: what"
                field, _, message = message.partition(": ")
            if field in Settings.model_fields:
                problems.append(_problem(field, message))
            else:
                problems.append(message)
        raise ConfigError(problems) from None
    if settings.fleet_file is not None:
        secrets = [str(values[f]) for f in SECRET_FIELDS if f in values]
        problems += _fleet_file_problems(settings.fleet_file, secrets)
    if problems:
        raise ConfigError(problems)
    return settings


def _fleet_file_problems(path: Path, secrets: list[str]) -> list[str]:
    """The fleet file is read here too, not only by fleet mode, so ``check`` refuses what
    ``run`` would and a broken file stops the start instead of the first cycle. Its problems
    quote its values, so a secret pasted into it is masked."""
    from topup_guard.fleet.rules import FleetFileError, load_fleet_file  # only for fleets

    try:
        load_fleet_file(path)
    except FleetFileError as exc:
        lines = [f"{env_name('fleet_file')}: {line}" for line in exc.problems]
        for secret in (s for s in secrets if len(s) >= 4):
            lines = [line.replace(secret, "******") for line in lines]
        return lines
    return []
