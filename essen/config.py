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

__all__ = ("BotSettings", "ConfigError", "load_bot_settings")

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
    workers: int = 16
    metrics_interval: float = 5.0

    SECRETS: ClassVar[tuple[str, ...]] = (
        "bot_service_secret",
        "fb_app_secret",
        "fb_verify_token",
        "fb_page_access_token",
        "debug_token",
        "pseudonym_key",
    )


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


def load_bot_settings(**overrides: object) -> BotSettings:
    """The bot's settings: environment, then overrides, then (development) generated secrets.

    Raises:
        ConfigError: invalid values, or a production secret that is not acceptable.
    """
    try:
        settings = BotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.production:
        for name in settings.SECRETS:
            check_secret(name, getattr(settings, name).get_secret_value())
        return settings
    unset = tuple(n for n in settings.SECRETS if not getattr(settings, n).get_secret_value())
    if unset:
        generated = _dev_secrets(settings.essen_data_dir, settings.SECRETS)
        settings = settings.model_copy(update={n: SecretStr(generated[n]) for n in unset})
    return settings
