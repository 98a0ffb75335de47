"""One LogLine instance on this machine: its configuration, instance key, store and logs.

    instance = Instance.init(Path("demo-data"), name="demo.local", tenant="acme")
    instance.log.append(span)
    instance.close()

The instance key signs checkpoints unattended, so it is kept like a server's TLS key: a file only
its owner can read (mode 0600), not behind a passphrase. Identities' keys live in the keystore.
"""

from __future__ import annotations

import os
from pathlib import Path

from logline.canonical import b64decode, b64encode
from logline.config import Config, load_config, write_config
from logline.errors import ConfigError, ParseError
from logline.identity.ids import check_tenant
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.store import open_store


def write_secret(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def load_instance_key(path: Path) -> PrivateKey:
    if not path.exists():
        raise ConfigError(f"instance key {path} is missing")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"instance key {path} is readable by others; run chmod 600 {path}")
    try:
        return PrivateKey.from_seed(b64decode(path.read_text("ascii").strip(), what="instance key"))
    except (ParseError, UnicodeDecodeError) as exc:
        raise ConfigError(f"instance key {path} is corrupt: {exc}") from exc


class Instance:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.key = load_instance_key(config.key_path)
        self.store = open_store(config.database_url)
        self.log = Log(self.store, config.instance, self.key)

    @classmethod
    def open(cls, home: Path) -> Instance:
        return cls(load_config(home))

    @classmethod
    def init(
        cls, home: Path, *, name: str, tenant: str, database_url: str | None = None
    ) -> Instance:
        if (home / "logline.toml").exists():
            raise ConfigError(f"{home} already holds a LogLine instance")
        check_tenant(tenant)
        created = [p for p in (home / "logline.toml", home / "instance.key") if not p.exists()]
        try:
            config = write_config(home, name, tenant, database_url)
            if not config.key_path.exists():
                write_secret(config.key_path, b64encode(PrivateKey.generate().seed()) + "\n")
            return cls(config)
        except BaseException:
            # Leave no half-made instance behind: a retry must not find "already initialised".
            for path in created:
                path.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        self.log.close()
        self.store.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
