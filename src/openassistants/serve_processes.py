"""``openassistants serve --workers N``: N server processes on one port.

Each process is a whole server (its own event loop, database pools, executor and event bus), forked
from this one once the app is built, so the imported code and the frozen objects (``cli.settle_gc``)
are shared copy-on-write. Every process binds its own listening socket to the same address with
``SO_REUSEPORT``, bound here before the first fork so that a refused address stops start-up at once:
the kernel then spreads incoming connections over the processes (by a hash of each connection's
addresses), which a single shared socket does unevenly (whichever loop wakes first accepts). What a
process cannot do alone (a run claimed by another, its cancel, its tool outputs, a resumed stream)
goes through the shared database as it does between separate hosts: PostgreSQL's run claims, the
``run_events`` table and LISTEN/NOTIFY.

This process only supervises: SIGINT or SIGTERM is passed on to every server process, which drains
as a single server does (``shutdown_grace_seconds``); a server process that dies otherwise is
started again on its socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

logger = logging.getLogger("openassistants.serve")

#: A server process's exit status when it could not start (uvicorn's own for that case): no point
#: in starting it again, so every process is stopped and ``serve`` ends with it.
STARTUP_FAILURE = 3
#: A server process that dies sooner than this after its start is not restarted again at once.
RESTART_BACKOFF_SECONDS = 1.0


def serve(config: uvicorn.Config, workers: int) -> int:
    """Serves ``config`` from ``workers`` processes until SIGINT or SIGTERM; returns the exit status."""
    sockets = bind_sockets(config.host, config.port, workers)

    def serve_one(sock: socket.socket) -> int:
        server = uvicorn.Server(config)
        server.run([sock])
        return 0 if server.started else STARTUP_FAILURE

    return supervise(sockets, serve_one)


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, each for one server process."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sockets = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def supervise(sockets: list[socket.socket], serve_one: Callable[[socket.socket], int]) -> int:
    """Forks one server process per socket (``serve_one(sock)`` in each, its exit status) and waits
    for them all; returns the exit status for this process."""
    children: dict[int, int] = {}  # pid -> index of its socket
    started: dict[int, float] = {}
    stopping = False

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the server process
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for other, sock in enumerate(sockets):
                if other != index:
                    sock.close()
            status = 1
            try:
                status = serve_one(sockets[index])
            except BaseException:
                logger.exception("server process %d failed", os.getpid())
            finally:
                os._exit(status)
        children[pid] = index
        started[pid] = time.monotonic()

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            # SIGTERM: uvicorn's graceful shutdown in each process (SIGINT twice would force it).
            with contextlib.suppress(ProcessLookupError):  # ended between wait() and now
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for index in range(len(sockets)):
        start(index)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        if stopping:
            continue
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == STARTUP_FAILURE:
            logger.error("server process %d could not start; stopping", pid)
            failed = True
            stop(signal.SIGTERM, None)
            continue
        logger.error("server process %d ended (%s); starting another", pid, _describe(status))
        if time.monotonic() - started.pop(pid, 0.0) < RESTART_BACKOFF_SECONDS:
            time.sleep(RESTART_BACKOFF_SECONDS)
        if not stopping:
            start(index)
    for sock in sockets:
        sock.close()
    return STARTUP_FAILURE if failed else 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
