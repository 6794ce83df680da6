"""The ``openassistants`` command: build Settings from flags over the environment, then start."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from openassistants.config import Settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


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
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
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


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (SQLite database and file blobs).")
    ] = None,
) -> None:
    """Serve the API at http://HOST:PORT/v1."""
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not settings.api_keys and not is_loopback(host):
        typer.echo(
            f"Refusing to bind {host} without authentication: set OPENASSISTANTS_API_KEYS, "
            "or bind a loopback address such as 127.0.0.1.",
            err=True,
        )
        raise typer.Exit(code=2)
    _configure_logging(settings)
    from openassistants.api.read_timeouts import protocol_with_read_timeouts
    from openassistants.app import create_app

    app = create_app(settings)
    settle_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol_with_read_timeouts(
            settings.header_read_timeout_seconds, settings.body_read_timeout_seconds
        ),
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@cli.command()
def worker() -> None:
    """Execute runs only (no API), sharing a PostgreSQL database with `serve` processes."""
    settings = Settings()
    if settings.is_sqlite:
        typer.echo(
            "A separate worker needs a shared database: set OPENASSISTANTS_DATABASE_URL to a "
            "postgresql+asyncpg:// URL. (With SQLite, `serve` executes runs itself.)",
            err=True,
        )
        raise typer.Exit(code=2)
    _configure_logging(settings)
    from openassistants.worker import run_worker

    settle_gc()
    asyncio.run(run_worker(settings))


@cli.command(hidden=True)
def version() -> None:
    """Print the version."""
    from openassistants import __version__

    typer.echo(__version__)


def main() -> None:
    cli()
