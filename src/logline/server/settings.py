"""Server settings: environment variables over the `[server]` table of `logline.toml`.

    settings = load_settings(config)          # LOGLINE_PORT=9000 beats `port = 8470` in the file
    settings.bind                             # → "127.0.0.1:9000"

Every setting is validated when the server starts (and by `logline config check`); a bad value is
one clear message naming the setting, never a traceback.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from logline.config import Config
from logline.errors import ConfigError

DEFAULT_PORT = 8470
DEFAULT_RATE_LIMITS = {
    "auth": "20/minute",
    "read": "1200/minute",
    "write": "3000/minute",
    "stream": "60/minute",
}


class ServerSettings(BaseSettings):
    """What `logline serve` and `logline up` read. Environment: `LOGLINE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="LOGLINE_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    # Lifetimes of what login hands out.
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(30 * 86_400, ge=300)
    challenge_ttl_s: int = Field(120, ge=10, le=3600)
    # Request bodies over this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Anyone may onboard (create an identity and a tenant) without an instance admin's token.
    allow_signup: bool = False
    rate_limit_storage: str = "memory://"
    # Keys in a shared store start with this: deployments sharing one Redis keep apart by it.
    rate_limit_prefix: str = Field("logline", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    rate_limits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    trusted_proxies: list[str] = Field(default_factory=list)
    stream_heartbeat_s: float = Field(15.0, gt=0, le=300)
    stream_buffer: int = Field(1000, ge=10, le=1_000_000)
    stream_poll_s: float = Field(1.0, gt=0, le=60)
    checkpoint_interval_s: float = Field(0.5, gt=0, le=3600)
    otlp_endpoint: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    shutdown_grace_s: float = Field(10.0, ge=0, le=600)
    # `logline up` runs a worker node beside the server, for the built-in job handlers.
    embedded_node: bool = True
    # A worker node not heard from for this long is marked lost (its jobs come back when their
    # leases expire); nodes are told to heartbeat at a third of it, at most every 5 s.
    node_lost_after_s: float = Field(30.0, ge=1, le=3600)
    # URL prefixes rule `webhook` actions may call (none by default: no webhook is allowed).
    rules_webhooks: list[str] = Field(default_factory=list, max_length=100)
    # How many follow-ups may lead from one client's span to the next (emit → rule → emit ...).
    rules_max_depth: int = Field(5, ge=1, le=50)

    @field_validator("rate_limits")
    @classmethod
    def _known_classes(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(DEFAULT_RATE_LIMITS)
        if unknown:
            raise ValueError(
                f"unknown route class(es) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_RATE_LIMITS)}"
            )
        return {**DEFAULT_RATE_LIMITS, **value}

    @property
    def bind(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's table arrives as init arguments; the environment overrides it.
        return env_settings, init_settings


def load_settings(config: Config, **overrides: Any) -> ServerSettings:
    """Settings from the environment and the config file's `[server]` table, then `overrides`."""
    values = {**config.server, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        settings = ServerSettings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    for key, value in overrides.items():
        # Command-line options beat the environment too.
        if value is not None and getattr(settings, key) != value:
            settings = settings.model_copy(update={key: value})
    return settings


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(
            f"server setting {where} (LOGLINE_{where.split('.')[0].upper()}): {error['msg']}"
        )
    return "; ".join(problems)
