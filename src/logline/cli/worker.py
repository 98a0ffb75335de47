"""`logline worker`: a worker node that runs jobs for a server.

    logline worker --server http://127.0.0.1:8470 --api-key llk_... --queue default \\
        --concurrency 4 --handlers mypkg.tasks --http-allow https://api.example.com/ \\
        --label zone=eu-1 --label gpu=a100

The API key has role `node` (`POST /v1/tenants/{tenant}/api-keys {"role": "node"}`; on tenant
`system` it serves every tenant). The built-in handlers (`logline.noop`, `logline.sleep`,
`logline.fail`, `logline.http`) are always loaded; `--handlers` adds a module's registry (see
`logline.engine.handlers`). The node registers with its labels and heartbeats, so
`logline node list` shows it. SIGTERM or Ctrl-C drains: no more claims, running jobs get
`--grace-s` seconds to finish, then the node deregisters. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from logline.cli.remote import DEFAULT_SERVER, ServerOption
from logline.engine.handlers import builtin_handlers, load_handlers
from logline.engine.jobs import DEFAULT_QUEUE
from logline.engine.nodes import parse_label
from logline.engine.worker import Worker
from logline.errors import Unauthenticated
from logline.observe.logs import LEVELS, configure_logging


def worker(
    server: ServerOption = DEFAULT_SERVER,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LOGLINE_API_KEY",
            show_default=False,
            help="An API key of role node (llk_...).",
        ),
    ] = None,
    queues: Annotated[
        list[str] | None, typer.Option("--queue", help="Queue to serve (repeatable).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1000, help="Jobs run at once.")
    ] = 4,
    handlers: Annotated[
        list[str] | None,
        typer.Option(
            "--handlers", help="Module with a `handlers` registry, or module:attr (repeatable)."
        ),
    ] = None,
    http_allow: Annotated[
        list[str] | None,
        typer.Option("--http-allow", help="URL prefix logline.http may call (repeatable)."),
    ] = None,
    lease_s: Annotated[
        float, typer.Option("--lease-s", min=1, max=3600, help="Lease per claim, renewed.")
    ] = 30.0,
    wait_s: Annotated[
        float, typer.Option("--wait-s", min=0, max=60, help="Long-poll wait per claim.")
    ] = 5.0,
    grace_s: Annotated[
        float, typer.Option("--grace-s", min=0, help="On SIGTERM: time to finish running jobs.")
    ] = 30.0,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", help="A label key=value the registry shows (repeatable)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="LOGLINE_LOG_LEVEL", help="/".join(LEVELS))
    ] = "info",
) -> None:
    """Run jobs for a server as a worker node, until SIGTERM or Ctrl-C."""
    if not api_key:
        raise Unauthenticated("give --api-key (or LOGLINE_API_KEY): an API key of role node")
    node_labels = dict(parse_label(label) for label in labels or [])
    configure_logging(log_level)
    # The working directory is importable, as with `python -m`: handler modules usually live there.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    registry = load_handlers(handlers or [], into=builtin_handlers(http_allow or []))
    node = Worker(
        server, api_key, registry, queues=queues or [DEFAULT_QUEUE], concurrency=concurrency,
        lease_s=lease_s, wait_s=wait_s, grace_s=grace_s, labels=node_labels,
    )  # fmt: skip
    asyncio.run(node.serve())
    if node.abandoned:
        # Handler threads that ignored cancellation would hold the exit (the interpreter joins
        # them); their attempts are reported already, so leave without them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
