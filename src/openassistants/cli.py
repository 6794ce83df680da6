"""The ``openassistants`` command: build Settings from flags over the environment, check them (a bad value
is one line and exit status 2, never a traceback), then start."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from openassistants import config_check
from openassistants.config import Settings

HELP = (
    "OpenAssistants: OpenAI's Assistants API (v2), self-hosted, on any OpenAI-compatible model.\n\n"
    "Start the server with `openassistants serve`, then point an official OpenAI SDK at "
    "http://127.0.0.1:8000/v1. Settings are OPENASSISTANTS_* environment variables: see "
    "docs/configuration.md, or `openassistants serve --help` for the main ones."
)

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)

#: Exit status of a refused configuration (a bad setting or flag, an unusable database): nothing started.
CONFIG_ERROR = 2


def _show_version(value: bool) -> None:
    if value:
        from openassistants import __version__

        typer.echo(f"openassistants {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options before the command."""


def refuse(message: str) -> typer.Exit:
    """Prints ``message`` as the one line of a refused configuration; raise what it returns."""
    typer.echo(f"openassistants: {message}", err=True)
    return typer.Exit(code=CONFIG_ERROR)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the given flags (None: not given). A bad value raises
    ValidationError, which ``main`` prints as one line per setting."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def check_database(settings: Settings) -> None:
    """Stops start-up within seconds, with the database's own message, if the database is unusable."""
    from openassistants.storage.preflight import DatabaseUnavailable, check_database

    try:
        check_database(settings.effective_database_url)
    except DatabaseUnavailable as exc:
        source = (
            f"{config_check.variable('database_url')}={config_check.redact_url(settings.database_url)}"
            if settings.database_url
            else f"the SQLite database under {config_check.variable('data_dir')}"
        )
        raise refuse(f"cannot use {source}: {exc}") from None


def _check_bind(host: str, port: int) -> None:
    """Refuses, before anything starts, an address that cannot be bound (in use, not this host's)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn binds: a port left in TIME_WAIT by a stopped server is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise refuse(f"cannot bind --host {host} --port {port}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _configure_logging(settings: Settings) -> None:
    # "trace" is uvicorn's level below DEBUG (5), unknown to logging until uvicorn is imported.
    level = 5 if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(message)s")
    # httpx logs every upstream request at INFO; our access log already covers what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)


#: Allocations between two collections of the youngest generation (CPython's default: 700). In a burst
#: of runs nearly every young object is still alive (the runs' rows, events, tasks) when collected, so
#: each collection walks them all and moves them on, and the older generations' collections then walk
#: them again: 700 made every stream wait; 7,000 still spent 24 young and 2 middle collections (105-145
#: ms) in a burst of 500 streams, 50,000 three young ones (~50 ms, at most ~20 ms each), and 4.8 -> 4.2
#: ms of CPU per run (docs/benchmarks.md, issue 3). Garbage that only the collector frees (cycles)
#: waits longer, a few MB at most.
GC_YOUNG_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once everything is imported: move what exists into the permanent generation, so that the
    collector never walks the modules' objects again (a full collection took ~65 ms in a 300-run
    burst, stopping every stream), and collect the young generation less often. Together, in that
    burst: 7.0 -> 6.2 ms of CPU per run, and first-token p99 1.7 -> 1.0 s (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


SERVE_HELP = (
    "Serve the API at http://HOST:PORT/v1.\n\n"
    "Settings are environment variables; the main ones: OPENASSISTANTS_LLM_BASE_URL (the model upstream, "
    "an OpenAI-compatible API root) and OPENASSISTANTS_LLM_API_KEY; OPENASSISTANTS_API_KEYS (the clients' "
    "keys, required to bind a non-loopback address); OPENASSISTANTS_DATABASE_URL (postgresql+asyncpg://…; "
    "unset: SQLite under OPENASSISTANTS_DATA_DIR).\n\n"
    "Every setting, its default and its meaning: docs/configuration.md."
)


@cli.command(help=SERVE_HELP)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (1-65535).")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (SQLite database and file blobs).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the port (more than 1 needs PostgreSQL).")
    ] = 1,
) -> None:
    """Serve the API (SERVE_HELP)."""
    if not 1 <= port <= 65535:
        raise refuse(f"--port {port}: expected a port from 1 to 65535")
    if workers < 1:
        raise refuse(f"--workers {workers}: expected 1 or more")
    settings = load_settings(data_dir=data_dir)
    if workers > 1 and settings.is_sqlite:
        raise refuse(
            f"--workers {workers} needs a shared database: set OPENASSISTANTS_DATABASE_URL to a "
            "postgresql+asyncpg:// URL. (SQLite is served by one process.)"
        )
    if not settings.api_keys and not is_loopback(host):
        raise refuse(
            f"refusing to bind {host} without authentication: set OPENASSISTANTS_API_KEYS, "
            "or bind a loopback address such as 127.0.0.1."
        )
    _check_bind(host, port)
    check_database(settings)
    _configure_logging(settings)
    # Imported here: every other command (backup, --version, …) starts without the server's stack.
    import uvicorn

    from openassistants.app import create_app, http_protocol

    app = create_app(settings)
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": http_protocol(settings),
        "access_log": False,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds),
    }
    settle_gc()
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
        return
    from openassistants import serve_processes

    config = uvicorn.Config(app, host=host, port=port, **options)
    raise typer.Exit(serve_processes.serve(config, workers))


@cli.command()
def worker() -> None:
    """Execute runs only (no API), sharing a PostgreSQL database with `serve` processes."""
    settings = load_settings()
    if settings.is_sqlite:
        raise refuse(
            "a separate worker needs a shared database: set OPENASSISTANTS_DATABASE_URL to a "
            "postgresql+asyncpg:// URL. (With SQLite, `serve` executes runs itself.)"
        )
    check_database(settings)
    _configure_logging(settings)
    from openassistants.worker import run_worker

    settle_gc()
    asyncio.run(run_worker(settings))


@cli.command()
def doctor() -> None:
    """Check the database, model and embeddings upstreams and the sandbox; say what to fix."""
    settings = load_settings()
    from openassistants.doctor import run

    raise typer.Exit(code=run(settings))


@cli.command()
def backup(
    path: Annotated[Path, typer.Argument(help="The backup to write: a new directory.")],
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory to back up (default: OPENASSISTANTS_DATA_DIR).")
    ] = None,
) -> None:
    """Back up the SQLite database and its files to a new directory, while the server runs.

    With PostgreSQL, use pg_dump and copy the files directory instead: docs/operations.md.
    """
    from openassistants.storage import backup as backups

    settings = _embedded(load_settings(data_dir=data_dir), "backup", "pg_dump")
    with _backup_errors("backup"):
        summary = backups.backup(settings.data_dir, path)
    typer.echo(
        f"backed up {settings.data_dir} to {summary.path} ({summary.files} files, {summary.bytes} bytes)"
    )


@cli.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A directory written by `openassistants backup`.")],
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory to restore into (default: OPENASSISTANTS_DATA_DIR).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace the database and files of a data directory that is not empty.")
    ] = False,
) -> None:
    """Check a backup (database integrity, every file) and restore it into an empty data directory.

    Stop the server first; start it on the data directory afterwards.
    """
    from openassistants.storage import backup as backups

    settings = _embedded(load_settings(data_dir=data_dir), "restore", "pg_restore")
    with _backup_errors("restore"):
        summary = backups.restore(path, settings.data_dir, force=force)
    typer.echo(f"restored {path} into {summary.path} ({summary.files} files, {summary.bytes} bytes)")


def _embedded(settings: Settings, verb: str, tool: str) -> Settings:
    """``settings``, unless they name PostgreSQL, whose backups are its own tools' business."""
    if not settings.is_sqlite:
        raise refuse(
            f"{verb} is for the embedded SQLite database; with OPENASSISTANTS_DATABASE_URL set, use {tool} "
            "and copy the files directory (docs/operations.md)"
        )
    return settings


@contextmanager
def _backup_errors(verb: str) -> Iterator[None]:
    from openassistants.storage.backup import BackupError

    try:
        yield
    except BackupError as exc:
        raise refuse(str(exc)) from None
    except OSError as exc:  # the disk's refusal (full, read-only, permissions): not the configuration's
        typer.echo(f"openassistants: {verb} failed: {exc}", err=True)
        raise typer.Exit(code=1) from None


@cli.command(name="export")
def export_data(
    path: Annotated[Path, typer.Argument(help="Where to write the archive (a new directory).")],
    key: Annotated[str | None, typer.Option(help="Export only this API key's tenant.")] = None,
) -> None:
    """Write the deployment's data to a versioned archive (docs/data.md), while it serves."""
    from openassistants.portability.commands import run_export

    raise typer.Exit(code=run_export(load_settings(), path, key))


@cli.command(name="import")
def import_data(
    path: Annotated[
        Path,
        typer.Argument(help="An archive, an assistants-thread-export/v1 export, or a folder of SDK dumps."),
    ],
    key: Annotated[str | None, typer.Option(help="Give the objects to this API key's tenant.")] = None,
    on_conflict: Annotated[
        str, typer.Option(help="An id stored here with other content: fail (import nothing) or skip it.")
    ] = "fail",
) -> None:
    """Import data into the configured database, keeping every id; importing again changes nothing."""
    from openassistants.portability.commands import run_import

    raise typer.Exit(code=run_import(load_settings(), path, key, on_conflict))


@cli.command(hidden=True)
def version() -> None:
    """Print the version."""
    from openassistants import __version__

    typer.echo(__version__)


def main() -> None:
    """The command: bad configuration and bad flags end it with one line and status 2, no traceback."""
    for warning in config_check.unknown_variables(os.environ):
        typer.echo(f"openassistants: {warning}", err=True)
    try:
        # Not standalone: errors come here, to be said in one line, rather than as a usage screen.
        status = cli(sys.argv[1:] or ["--help"], standalone_mode=False)
    except ValidationError as exc:
        if not config_check.is_settings_error(exc):
            raise
        for line in config_check.settings_errors(exc):
            typer.echo(f"openassistants: {line}", err=True)
        status = CONFIG_ERROR
    except SettingsError as exc:  # a value pydantic-settings could not even decode (JSON)
        typer.echo(f"openassistants: {' '.join(str(exc).split())}", err=True)
        status = CONFIG_ERROR
    except typer.TyperException as exc:  # a bad flag or argument
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "openassistants"
        typer.echo(f"{command}: {exc.format_message()} (see {command} --help)", err=True)
        status = exc.exit_code
    except typer.Abort:
        status = 1
    sys.exit(status if isinstance(status, int) else 0)
