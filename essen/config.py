"""Settings per service, from the environment (names are the operator's contract).

In development every secret has a safe generated default, created once and
kept in ``$ESSEN_DATA_DIR/dev-secrets.json`` (mode 0600) so the services of one
checkout agree with each other; an explicitly set variable always wins.  In
production (``ESSEN_ENV=production``) nothing is generated: a secret that is
missing, shorter than 32 characters or a known default stops the service at
start, with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from essen.errors import EssenError

__all__ = (
    "AdminSettings",
    "BotSettings",
    "ConfigError",
    "load_admin_settings",
    "load_bot_settings",
)

MIN_SECRET_LENGTH = 32
#: Values seen in guides and examples; never acceptable in production.
KNOWN_DEFAULTS = frozenset(
    {"bot-service", "secret", "changeme", "change-me", "development", "dev", "test", "password"}
)


class ConfigError(EssenError):
    """The configuration cannot be used; the message names the variable."""


class _Common(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    essen_env: Literal["development", "production"] = "development"
    essen_data_dir: Path = Path(".essen")

    @property
    def production(self) -> bool:
        return self.essen_env == "production"


class BotSettings(_Common):
    port: int = 3000
    admin_backend_url: str = "http://127.0.0.1:4000"
    admin_socket_path: str = "/api/socket.io/"
    bot_service_secret: SecretStr = SecretStr("")
    bot_instance: str = Field(default_factory=lambda: f"bot-{socket.gethostname()[:40]}")
    fb_app_secret: SecretStr = SecretStr("")
    fb_verify_token: SecretStr = SecretStr("")
    fb_page_access_token: SecretStr = SecretStr("")
    fb_graph_url: str = "https://graph.facebook.com"
    fb_graph_version: str = "v21.0"
    debug_token: SecretStr = SecretStr("")
    #: Key of the pseudonymous user ids (a keyed hash of the PSID).
    pseudonym_key: SecretStr = SecretStr("")
    content_file: Path | None = None
    webhook_max_body: int = 1024 * 1024
    inbox_size: int = 1000
    #: Users served at once (each user in order); with a Graph API at ~150 ms a call,
    #: 64 keeps up with ~140 messages/s.
    workers: int = 64
    metrics_interval: float = 5.0
    #: Send API calls per second for the page, and the burst above it (Meta's
    #: limit depends on the page; an answer takes one call, plus "seen" and
    #: "typing" while the budget has room).
    send_api_rate: float = Field(default=250.0, gt=0)
    send_api_burst: int = Field(default=50, ge=1)
    #: How the uplink reaches the admin API: ``polling,websocket`` (the guide's
    #: default: polling first, then upgrade) or ``websocket`` (several admin
    #: instances behind a load balancer without sticky sessions).
    admin_socket_transports: str = "polling,websocket"
    #: With several bot instances: Redis for webhook dedupe across them.
    redis_url: str = ""
    essen_cluster: str = Field(default="essen", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @property
    def uplink_transports(self) -> tuple[str, ...]:
        return _transports("ADMIN_SOCKET_TRANSPORTS", self.admin_socket_transports)

    SECRETS: ClassVar[tuple[str, ...]] = (
        "bot_service_secret",
        "fb_app_secret",
        "fb_verify_token",
        "fb_page_access_token",
        "debug_token",
        "pseudonym_key",
    )


class AdminSettings(_Common):
    port: int = 4000
    admin_instance: str = Field(default_factory=lambda: f"admin-{socket.gethostname()[:40]}")
    bot_service_secret: SecretStr = SecretStr("")
    jwt_secret: SecretStr = SecretStr("")
    jwt_issuer: str = "essen-admin"
    jwt_audience: str = "essen-dashboard"
    #: Lifetime of an admin token, in seconds.
    token_ttl: float = 3600.0
    #: Comma-separated browser origins allowed for REST and Socket.IO.
    cors_origins: str = ""
    database_url: str = ""
    redis_url: str = ""
    #: A bot silent this long is "stale", then "down" (seconds).
    bot_stale_after: float = 15.0
    bot_down_after: float = 60.0
    dashboard_dir: Path | None = None
    #: Message log retention in the store, in days.
    message_retention_days: int = 7
    #: Socket.IO transports accepted.  Empty: ``websocket`` only when
    #: ``REDIS_URL`` is set (several instances: polling needs sticky sessions,
    #: which App Platform's load balancer does not have), else both.
    socketio_transports: str = ""
    #: Names the Redis channel and keys the admin instances share, so that two
    #: deployments (staging, production) can use one Redis without mixing.
    essen_cluster: str = Field(default="essen", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @property
    def transports(self) -> tuple[str, ...]:
        if not self.socketio_transports:
            return ("websocket",) if self.redis_url else ("polling", "websocket")
        return _transports("SOCKETIO_TRANSPORTS", self.socketio_transports)

    SECRETS: ClassVar[tuple[str, ...]] = ("bot_service_secret", "jwt_secret")

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.essen_data_dir.resolve() / 'essen.db'}"


def _transports(variable: str, value: str) -> tuple[str, ...]:
    chosen = tuple(t.strip() for t in value.split(",") if t.strip())
    if not chosen or any(t not in ("polling", "websocket") for t in chosen):
        raise ConfigError(f"{variable} must list polling and/or websocket, not {value!r}")
    return chosen


def _dev_secrets(data_dir: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Generated development secrets, created once per data folder."""
    path = data_dir / "dev-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [name for name in names if name not in stored]
    if missing:
        for name in missing:
            stored[name] = secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return stored


def check_secret(name: str, value: str) -> None:
    """Refuse a production secret that is missing, short or a known default."""
    variable = name.upper()
    if not value:
        raise ConfigError(f"{variable} is required in production")
    if value.lower() in KNOWN_DEFAULTS:
        raise ConfigError(f"{variable} is a known default value; set a real secret")
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{variable} must be at least {MIN_SECRET_LENGTH} characters")


def load_admin_settings(**overrides: object) -> AdminSettings:
    """The admin API's settings; like :func:`load_bot_settings`, plus HTTPS-only CORS in production.

    Raises:
        ConfigError: invalid values, or production settings that are not acceptable.
    """
    try:
        settings = AdminSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    settings.transports  # noqa: B018 - validates SOCKETIO_TRANSPORTS at start
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://")):
        raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")
    if settings.production:
        for name in settings.SECRETS:
            check_secret(name, getattr(settings, name).get_secret_value())
        for origin in settings.origins:
            if not origin.startswith("https://"):
                raise ConfigError(
                    f"CORS_ORIGINS must list https:// origins in production: {origin}"
                )
        if not settings.database_url:
            # SQLite on an App Platform container's disk would lose the admins
            # and the history at every deploy.
            raise ConfigError("DATABASE_URL is required in production (postgresql://...)")
        return settings
    unset = tuple(n for n in settings.SECRETS if not getattr(settings, n).get_secret_value())
    if unset:
        generated = _dev_secrets(settings.essen_data_dir, settings.SECRETS + BotSettings.SECRETS)
        settings = settings.model_copy(update={n: SecretStr(generated[n]) for n in unset})
    return settings


def load_bot_settings(**overrides: object) -> BotSettings:
    """The bot's settings: environment, then overrides, then (development) generated secrets.

    Raises:
        ConfigError: invalid values, or a production secret that is not acceptable.
    """
    try:
        settings = BotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    settings.uplink_transports  # noqa: B018 - validates ADMIN_SOCKET_TRANSPORTS at start
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://")):
        raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")
    if settings.production:
        for name in settings.SECRETS:
            check_secret(name, getattr(settings, name).get_secret_value())
        if not settings.admin_backend_url.startswith("https://"):
            raise ConfigError("ADMIN_BACKEND_URL must be an https:// URL in production")
        return settings
    unset = tuple(n for n in settings.SECRETS if not getattr(settings, n).get_secret_value())
    if unset:
        generated = _dev_secrets(settings.essen_data_dir, settings.SECRETS + AdminSettings.SECRETS)
        settings = settings.model_copy(update={n: SecretStr(generated[n]) for n in unset})
    return settings
