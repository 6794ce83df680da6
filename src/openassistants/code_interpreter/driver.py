"""The kernel's REPL driver. It runs inside the sandbox (never imported by the server), stdlib only.

    python -I -B driver.py '<DriverConfig as JSON>'

It applies the resource limits (and, when started as root, becomes the kernel's own uid), then answers
requests on stdin with replies on stdout, each a frame: a 4-byte big-endian length and UTF-8 JSON.

    {"op": "exec", "code": "..."}    ->  {"logs": "output, then traceback", "figures": ["<base64 PNG>"],
                                          "error": null | {"name": "KeyError", "summary": "KeyError: 'a'"}}
    {"op": "preload", "modules": []} ->  {"ok": true}

Cells run like Jupyter's: in one persistent ``__main__`` namespace, the value of a final expression is
shown, stdout and stderr are captured (their beginning and end, with a note between if they are too
long for max_output_bytes along with the traceback), and open matplotlib figures are saved as
PNGs and closed after each cell.
"""

from __future__ import annotations

import ast
import base64
import collections
import ctypes
import io
import json
import linecache
import os
import resource
import struct
import sys
import traceback
import types
import warnings
from typing import Any, BinaryIO

FRAME_HEADER = struct.Struct(">I")
MAX_FIGURES = 20
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
DRIVER_PID = os.getpid()


def main() -> None:
    config = json.loads(sys.argv[1])
    requests, replies = _take_protocol_streams()
    _confine(config)
    os.chdir(config["data_dir"])
    namespace = _main_namespace()
    warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")
    _send(replies, {"ready": True})
    cell = 0
    while (request := _receive(requests)) is not None:
        if request.get("op") == "preload":
            _preload(request.get("modules", []))
            _send(replies, {"ok": True})
            continue
        cell += 1
        _send(replies, run_cell(str(request["code"]), cell, namespace, config["max_output_bytes"]))


def _take_protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """Keep stdin/stdout for frames only; model code gets /dev/null on fds 0 and 1 (fd 2 stays the
    manager's log pipe), so neither input() nor a subprocess can touch the protocol."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return requests, replies


def _confine(config: dict[str, Any]) -> None:
    """Limits first, then (as root) the kernel's own uid and no way back to privileges."""
    limits = config["limits"]
    for which, value in (
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ):
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # The CPU soft limit sends SIGXCPU, which says what happened; at the hard limit it is SIGKILL.
        resource.setrlimit(which, (value, value + 1 if which == resource.RLIMIT_CPU else value))
    os.nice(config["niceness"])
    # Should the host run out of memory after all (each process has its own limit), the kernel's
    # processes are the ones the OOM killer takes first, not the server's.
    with open("/proc/self/oom_score_adj", "w") as adjustment:
        adjustment.write("1000")
    libc = ctypes.CDLL(None, use_errno=True)
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        # A uid change makes a process undumpable, which hides /proc/self from it; nothing here is secret.
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _main_namespace() -> dict[str, Any]:
    """A fresh ``__main__`` module for the cells, so pickle finds the classes and functions they define."""
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    return module.__dict__


def _preload(modules: list[str]) -> None:
    for name in modules:
        try:
            __import__(name)
        except Exception:  # a warm-up import that fails only makes the first cell that needs it slower
            continue


def run_cell(code: str, cell: int, namespace: dict[str, Any], max_output: int) -> dict[str, Any]:
    _reap_children()
    filename = f"<cell {cell}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    output = _Output(max_output)
    sys.stdout = _Stream(output)
    sys.stderr = _Stream(output)
    error = None
    trace = ""
    try:
        _execute(code, filename, namespace)
    except BaseException as exc:
        _exit_if_forked()
        trace = _shorten(_format_exception(exc), max_output // 2)
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        error = {"name": type(exc).__name__, "summary": summary}
    _exit_if_forked()
    figures = _collect_figures(output)
    logs = output.text(max_output - len(trace) - 1)
    logs = "\n".join(part.rstrip("\n") for part in (logs, trace) if part)
    return {"logs": logs, "error": error, "figures": figures}


def _execute(code: str, filename: str, namespace: dict[str, Any]) -> None:
    """Run the cell; show a final expression's value, as Jupyter does."""
    tree = ast.parse(code, filename, "exec")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is not None:
            namespace["_"] = value
            print(repr(value))


def _reap_children() -> None:
    """Collect the exit status of the previous cells' children, all killed by the server after their
    cell, so that they hold no pid (a subprocess.Popen left behind then reads returncode 0)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _exit_if_forked() -> None:
    """A child the cell forked (os.fork) must never reach the protocol: it ends here."""
    if os.getpid() != DRIVER_PID:
        os._exit(0)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}\n[... {len(text) - limit} characters omitted ...]\n{text[-limit // 2 :]}"


def _format_exception(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _collect_figures(output: _Output) -> list[str]:
    """Save every open matplotlib figure as a PNG and close it, as the hosted tool shows them."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    figures = []
    try:
        for number in pyplot.get_fignums()[:MAX_FIGURES]:
            buffer = io.BytesIO()
            pyplot.figure(number).savefig(buffer, format="png", bbox_inches="tight")
            figures.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    except Exception as exc:
        output.write(f"\n[could not render a figure: {type(exc).__name__}: {exc}]\n")
    finally:
        pyplot.close("all")
    return figures


class _Output:
    """The cell's stdout and stderr, interleaved: the first ``cap`` characters and the last ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head: list[str] = []
        self.head_size = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_size = 0
        self.total = 0

    def write(self, text: str) -> None:
        self.total += len(text)
        room = self.cap - self.head_size
        if room > 0:
            self.head.append(text[:room])
            self.head_size += len(self.head[-1])
            text = text[room:]
        if text:
            self.tail.append(text)
            self.tail_size += len(text)
            while self.tail_size - len(self.tail[0]) >= self.cap:
                self.tail_size -= len(self.tail.popleft())

    def text(self, budget: int) -> str:
        """All of it if it fits in ``budget`` characters; else its beginning and its end, with a note."""
        head, tail = "".join(self.head), "".join(self.tail)
        if self.total <= budget:
            return head + tail
        end = max(budget // 4, 0)
        start = max(budget - end - 60, 0)
        shown_end = (
            (tail if self.total > self.head_size + self.tail_size else head + tail)[-end:] if end else ""
        )
        omitted = self.total - start - len(shown_end)
        return f"{head[:start]}\n[... {omitted} characters of output omitted ...]\n{shown_end}"


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr for a cell."""

    encoding = "utf-8"

    def __init__(self, output: _Output) -> None:
        self._output = output

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._output.write(text)
        return len(text)


def _send(stream: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode("utf-8")
    stream.write(FRAME_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    message: dict[str, Any] = json.loads(stream.read(size))
    return message


if __name__ == "__main__":
    main()
