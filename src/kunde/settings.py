"""One typed settings object, read from ``KUNDE_*`` variables and an optional TOML file.

Nothing is read at import time: `load_settings()` is called by the composition
root (`kunde.app`) and by the CLI. Outside ``KUNDE_ENV=dev``/``test`` the default
development secrets are refused, so a forgotten variable cannot ship.
"""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from kunde.core.errors import ConfigurationError

DEV_SECRET_KEY = "dev-secret-key-change-me-0123456789abcdef"  # noqa: S105 - refused outside dev
# 32 zero-ish bytes, base64: obviously not a production key.
DEV_MASTER_KEY = base64.b64encode(b"kunde-dev-master-key-not-secret!").decode()

Env = Literal["dev", "test", "prod"]


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    env: Env = "dev"
    data_dir: str = "kunde-data"
    database_url: str = ""
    secret_key: str = DEV_SECRET_KEY
    master_key: str = ""
    master_key_file: str = ""
    # Old master keys (base64, comma separated) still accepted to unwrap data keys during rotation.
    previous_master_keys: str = ""
    allow_unsafe_durability: bool = False
    partitions: int = 16
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    run_consumers: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = False
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10
    db_timeout_seconds: float = 5.0
    secure_cookies: bool = False
    redis_url: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    mail_from: str = "kunde@localhost"
    inbound_smtp_port: int = 0
    # Domain whose mail reaches the inbound SMTP server (Reply-To of case replies);
    # empty: the domain of mail_from.
    inbound_mail_domain: str = ""
    # Payments: the provider new checkouts use ("test" only in dev/test) and its credentials.
    payment_provider: str = "test"
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    # Identity-resolution rules over the defaults, JSON keyed by identifier kind.
    identity_rules: str = ""
    # Rate limits in requests per second (burst twice that), per credential and per address.
    rate_limit_per_key: float = 2000.0
    rate_limit_per_ip: float = 1000.0
    # Retention periods in days per data class (defaults and legal basis: docs/privacy.md).
    retention_raw_events_days: int = 395
    retention_message_archive_days: int = 730
    retention_cases_days: int = 1095
    retention_orders_invoices_days: int = 3653
    retention_audit_days: int = 1095

    # -- derived values ---------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_path / 'kunde.db').resolve()}"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def is_dev(self) -> bool:
        return self.env in ("dev", "test")

    def master_key_bytes(self) -> bytes:
        raw = self.master_key
        if self.master_key_file:
            raw = Path(self.master_key_file).read_text().strip()
        if not raw:
            raw = DEV_MASTER_KEY
        try:
            key = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise ConfigurationError(
                "KUNDE_MASTER_KEY must be base64 of 32 random bytes; "
                "create one with: python -c "
                "'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'"
            ) from exc
        if len(key) != 32:
            raise ConfigurationError(f"KUNDE_MASTER_KEY must decode to 32 bytes, got {len(key)}")
        return key

    def previous_master_key_bytes(self) -> list[bytes]:
        return [base64.b64decode(k) for k in self.previous_master_keys.split(",") if k.strip()]


_FIELDS = {f for f in Settings.__struct_fields__}


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Settings from a TOML file (``KUNDE_CONFIG_FILE``), ``KUNDE_*`` variables, then overrides.

    Raises `ConfigurationError` with a message that says what to set.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    config_file = env.get("KUNDE_CONFIG_FILE")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigurationError(f"KUNDE_CONFIG_FILE={config_file} does not exist")
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        unknown = set(data) - _FIELDS
        if unknown:
            raise ConfigurationError(f"unknown settings in {config_file}: {sorted(unknown)}")
        values.update(data)
    for name in _FIELDS:
        key = f"KUNDE_{name.upper()}"
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid setting: {exc}") from exc
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.partitions < 1 or s.partitions > 1024:
        raise ConfigurationError("KUNDE_PARTITIONS must be between 1 and 1024")
    if s.rate_limit_per_key <= 0 or s.rate_limit_per_ip <= 0:
        raise ConfigurationError("KUNDE_RATE_LIMIT_PER_KEY and KUNDE_RATE_LIMIT_PER_IP must be > 0")
    for name in _FIELDS:
        if name.startswith("retention_") and getattr(s, name) < 1:
            raise ConfigurationError(f"KUNDE_{name.upper()} must be at least 1 day")
    s.master_key_bytes()
    if s.is_dev:
        return
    problems = []
    if s.secret_key == DEV_SECRET_KEY or len(s.secret_key) < 32:
        problems.append("KUNDE_SECRET_KEY (at least 32 random characters)")
    if not (s.master_key or s.master_key_file) or s.master_key == DEV_MASTER_KEY:
        problems.append("KUNDE_MASTER_KEY or KUNDE_MASTER_KEY_FILE (base64 of 32 random bytes)")
    if problems:
        raise ConfigurationError(
            f"KUNDE_ENV={s.env} refuses the development defaults; set "
            + " and ".join(problems)
            + ". For a local trial use KUNDE_ENV=dev."
        )
