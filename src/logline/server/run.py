"""Running the server: `logline serve` (the control plane) and `logline up` (all on one machine).

    serve(Path(".logline"), port=0)            # blocks until SIGINT/SIGTERM

`up` also makes the data directory if there is none and, on the first start, a first tenant and
an instance administrator whose password it prints (and keeps in `<home>/admin-password`, mode
0600, until you change it). Both print one line `LogLine serving at <url>` once the server
accepts requests. On SIGTERM they stop accepting, finish in-flight requests (up to
`shutdown_grace_s`), drop stream subscribers with a cursor to resume from, and checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from logline.config import CONFIG_FILE
from logline.errors import ConfigError
from logline.instance import Instance, write_secret
from logline.observe.logs import configure_logging
from logline.server.app import create_app
from logline.server.models import UserIn
from logline.server.routes.accounts import create_user, grant, issue_api_key
from logline.server.services import SYSTEM_TENANT, Services
from logline.server.settings import ServerSettings, load_settings

ADMIN = "admin"
PASSWORD_FILE = "admin-password"
DEFAULT_INSTANCE = "logline.local"


@dataclass(frozen=True, slots=True)
class Login:
    tenant: str
    username: str
    password: str | None  # None once the first password was changed (file removed)


class _Server(uvicorn.Server):
    """Uvicorn, telling the stream to let go of its clients as soon as shutdown starts."""

    def __init__(
        self,
        config: uvicorn.Config,
        services: Services,
        banner: str,
        node: Callable[[], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        super().__init__(config)
        self.services = services
        self.banner = banner
        self.start_node = node
        self.node: subprocess.Popen[bytes] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.banner, flush=True)
            if self.start_node is not None:
                self.node = self.start_node()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        feed = self.services.feed
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.call_soon_threadsafe(feed.close)
        if self.node is not None and self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)  # it drains its jobs while requests finish
        # Unlike uvicorn's own handler, do not re-raise the signal after shutting down: the
        # process closes its store and exits 0, which is what a graceful stop is.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(settings: ServerSettings, sock: socket.socket) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{sock.getsockname()[1]}"


def run(instance: Instance, settings: ServerSettings, *, first_login: bool = False) -> None:
    """Serve until a signal stops the server; `logline up` (`first_login`) also runs a node."""
    configure_logging(settings.log_level, json=settings.log_json)
    services = Services(instance, settings)
    login = bootstrap(services) if first_login else None
    sock = _bind(settings.host, settings.port)
    url = _url(settings, sock)
    node = None
    if first_login and settings.embedded_node:
        key = node_key(services)

        def node() -> subprocess.Popen[bytes]:
            return _start_node(url, key, settings)

    banner = f"LogLine serving at {url}"
    if login is not None:
        banner += f"\n  tenant: {login.tenant}\n  login:  {login.username}"
        banner += f" / {login.password}" if login.password else " (password changed)"
        banner += f"\n  docs:   {url}/docs"
    config = uvicorn.Config(
        create_app(services),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        ws_ping_interval=20.0,
        lifespan="on",
    )
    server = _Server(config, services, banner, node)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if server.node is not None:
            _stop_node(server.node, settings.shutdown_grace_s)
        services.close()
    if not server.started:
        raise ConfigError("the server did not start; the log above says why")


def serve(home: Path, **overrides: object) -> None:
    instance = Instance.open(home)
    try:
        settings = load_settings(instance.config, **overrides)
    except BaseException:
        instance.close()
        raise
    run(instance, settings)


def up(home: Path, **overrides: object) -> None:
    """Everything on one machine, making the data directory and first login if needed."""
    if not (home / CONFIG_FILE).exists():
        Instance.init(home, name=DEFAULT_INSTANCE, tenant="default").close()
    instance = Instance.open(home)
    try:
        settings = load_settings(instance.config, **overrides)
    except BaseException:
        instance.close()
        raise
    run(instance, settings, first_login=True)


def bootstrap(services: Services) -> Login:
    """The first tenant and instance administrator, made once; the login to show."""
    home = services.instance.config.home
    tenant = services.instance.config.default_tenant
    services.start()
    password_file = home / PASSWORD_FILE
    if services.accounts.count_users() == 0:
        password = secrets.token_urlsafe(12)
        services.ensure_tenant(tenant, tenant, by=services.system_identity)
        user = UserIn(
            username=ADMIN,
            password=password,
            tenant=tenant,
            role="owner",
            instance_admin=True,
            display_name="Instance administrator",
        )
        password_file.unlink(missing_ok=True)
        write_secret(password_file, password + "\n")
        created = create_user(services, user, services.system_identity)
        # The first administrator also owns `system`, where instance-wide node keys live.
        grant(services, SYSTEM_TENANT, created.identity, "owner", services.system_identity)
    stored = password_file.read_text().strip() if password_file.exists() else None
    return Login(tenant, ADMIN, stored)


NODE_KEY_FILE = "node-key"


def node_key(services: Services) -> str:
    """The embedded node's API key: an instance-wide node, made once, kept in the home (0600)."""
    path = services.instance.config.home / NODE_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    _, secret = issue_api_key(
        services, SYSTEM_TENANT, "embedded node", "node", services.system_identity
    )
    write_secret(path, secret + "\n")
    return secret


def _start_node(url: str, key: str, settings: ServerSettings) -> subprocess.Popen[bytes]:
    """`logline worker` against this server, with the built-in handlers."""
    env = {**os.environ, "LOGLINE_API_KEY": key}  # not on the command line, where ps shows it
    command = [
        sys.executable,
        "-m",
        "logline.cli.main",
        "worker",
        "--server",
        url,
        "--log-level",
        settings.log_level,
    ]
    return subprocess.Popen(command, env=env)


def _stop_node(node: subprocess.Popen[bytes], grace_s: float) -> None:
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
    try:
        node.wait(grace_s + 5)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()
