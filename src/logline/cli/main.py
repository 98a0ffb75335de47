"""The `logline` Typer app, and `main`, the one place errors become output."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from logline.cli import (
    approvals,
    bundles,
    edits,
    ids,
    jobs,
    logs,
    nodes,
    onboard,
    rules,
    schedules,
    server,
    spans,
    worker,
)
from logline.cli.common import Settings, settings
from logline.cli.output import fields, mask_url, one_line
from logline.config import CONFIG_FILE, DB_FILE, KEY_FILE, KEYSTORE_FILE, check_instance_name
from logline.errors import ConfigError, LogLineError
from logline.identity.ids import check_tenant
from logline.identity.keystore import Keystore, passphrase_from_env_or_prompt
from logline.instance import Instance

# Panels group `--help` by task; the offline ones need no data directory at all.
SETUP, SERVE, WRITE, LOG, JOBS, RULES, OFFLINE = (
    "Set up",
    "Server",
    "Write",
    "Log and bundles",
    "Jobs",
    "Rules",
    "Offline verification",
)

app = typer.Typer(
    name="logline",
    help="LogLine: a verifiable timeline of signed spans on per-tenant Merkle logs.",
    no_args_is_help=True,
    add_completion=False,
    # Locals in a traceback can hold passphrases and keys.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def options(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Data directory (default: $LOGLINE_HOME, else ./.logline).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    ctx.obj = Settings(home)


@app.command("init", rich_help_panel=SETUP)
def init(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option("--instance", help="Instance name; it names the log key and origins.")
    ] = "logline.local",
    tenant: Annotated[str, typer.Option("--tenant", help="Default tenant.")] = "default",
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="Database URL (default: SQLite in the data directory)."
        ),
    ] = None,
) -> None:
    """Create the data directory, configuration, instance key and an empty keystore."""
    home = settings(ctx).home
    check_instance_name(name)
    check_tenant(tenant)
    for existing in (CONFIG_FILE, KEYSTORE_FILE):
        if (home / existing).exists():
            raise ConfigError(f"{home} already holds a LogLine instance ({existing} exists)")
    passphrase = passphrase_from_env_or_prompt(confirm=True)
    created = _missing(home)
    try:
        with Instance.init(home, name=name, tenant=tenant, database_url=database_url) as opened:
            Keystore.create(opened.config.keystore_path, passphrase)
            config, verifier = opened.config, opened.log.verifier()
    except BaseException:
        _remove(home, created)
        raise
    fields([("data directory", home), ("config", home / CONFIG_FILE),
            ("instance key", f"{config.key_path} (mode 0600)"),
            ("keystore", f"{config.keystore_path} (encrypted, empty)"),
            ("database", mask_url(config.database_url)), ("instance", config.instance),
            ("default tenant", config.default_tenant), ("log key", verifier)])  # fmt: skip


app.add_typer(ids.app, name="id", rich_help_panel=SETUP)
app.add_typer(server.config_app, name="config", rich_help_panel=SETUP)
app.command("onboard", rich_help_panel=SETUP)(onboard.onboard)
app.command("serve", rich_help_panel=SERVE)(server.serve)
app.command("up", rich_help_panel=SERVE)(server.up)
app.command("worker", rich_help_panel=SERVE)(worker.worker)
app.add_typer(jobs.app, name="job", rich_help_panel=JOBS)
app.add_typer(jobs.dead_letters_app, name="dead-letters", rich_help_panel=JOBS)
app.add_typer(schedules.app, name="schedule", rich_help_panel=JOBS)
app.add_typer(nodes.app, name="node", rich_help_panel=JOBS)
app.add_typer(rules.app, name="rules", rich_help_panel=RULES)
app.add_typer(approvals.app, name="approvals", rich_help_panel=RULES)
app.add_typer(spans.app, name="span", rich_help_panel=WRITE)
app.command("replay", rich_help_panel=WRITE)(edits.replay)
app.command("revert", rich_help_panel=WRITE)(edits.revert)
app.command("redact", rich_help_panel=WRITE)(edits.redact)
app.add_typer(logs.app, name="log", rich_help_panel=LOG)
app.command("export", rich_help_panel=LOG)(bundles.export)
app.command("import", rich_help_panel=LOG)(bundles.import_)
app.command("verify", rich_help_panel=OFFLINE)(bundles.verify)
app.command("verify-receipt", rich_help_panel=OFFLINE)(bundles.verify_receipt_command)


def _missing(home: Path) -> list[Path]:
    """What `init` may create, so a failed init can take it all back."""
    if not home.exists():
        return [home]
    names = (CONFIG_FILE, KEY_FILE, KEYSTORE_FILE, DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm",
             f"{DB_FILE}.migrate-lock")  # fmt: skip
    return [home / name for name in names if not (home / name).exists()]


def _remove(home: Path, created: list[Path]) -> None:
    for path in created:
        if path == home:
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def main() -> None:
    try:
        app(prog_name="logline")
    except LogLineError as exc:
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
