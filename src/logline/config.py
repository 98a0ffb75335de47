"""The data directory and its configuration.

    <home>/logline.toml     instance name, database URL, [server] (written by `logline init`)
    <home>/instance.key     the instance's Ed25519 seed, base64, mode 0600
    <home>/keystore.json    identities' private keys, encrypted with a passphrase
    <home>/logline.db       the SQLite database (the embedded default)

`home` is `--home`, else `$LOGLINE_HOME`, else `./.logline`. `$LOGLINE_DATABASE_URL` overrides the
database URL of the file (for example to point at PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logline.errors import ConfigError

CONFIG_FILE = "logline.toml"
KEY_FILE = "instance.key"
KEYSTORE_FILE = "keystore.json"
DB_FILE = "logline.db"
_INSTANCE = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?")


def default_home() -> Path:
    return Path(os.environ.get("LOGLINE_HOME") or ".logline")


def check_instance_name(name: str) -> str:
    if not _INSTANCE.fullmatch(name):
        raise ConfigError(
            f"instance name must be a lowercase host-like name (a-z, 0-9, '.', '-'), got {name!r}"
        )
    return name


@dataclass(frozen=True, slots=True)
class Config:
    home: Path
    instance: str
    database_url: str
    default_tenant: str
    server: dict[str, Any] = field(default_factory=dict)  # the `[server]` table (server.settings)

    @property
    def key_path(self) -> Path:
        return self.home / KEY_FILE

    @property
    def keystore_path(self) -> Path:
        return self.home / KEYSTORE_FILE


def load_config(home: Path) -> Config:
    path = home / CONFIG_FILE
    if not path.exists():
        raise ConfigError(
            f"no LogLine data directory at {home} (missing {CONFIG_FILE}); run `logline init` first"
        )
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - {"instance", "database_url", "default_tenant", "server"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    instance = data.get("instance")
    if not isinstance(instance, str):
        raise ConfigError(f"{path}: `instance` must be set to the instance name")
    url = os.environ.get("LOGLINE_DATABASE_URL") or data.get("database_url") or sqlite_url(home)
    tenant = data.get("default_tenant", "default")
    if not isinstance(url, str) or not isinstance(tenant, str):
        raise ConfigError(f"{path}: database_url and default_tenant must be strings")
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{path}: `server` must be a table ([server])")
    return Config(home, check_instance_name(instance), url, tenant, server)


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{(home / DB_FILE).resolve()}"


def write_config(
    home: Path, instance: str, default_tenant: str, database_url: str | None = None
) -> Config:
    check_instance_name(instance)
    # JSON string escapes are valid TOML basic-string escapes.
    lines = [f"instance = {json.dumps(instance)}", f"default_tenant = {json.dumps(default_tenant)}"]
    if database_url is not None:
        lines.append(f"database_url = {json.dumps(database_url)}")
    home.mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text("\n".join(lines) + "\n", "utf-8")
    return load_config(home)
