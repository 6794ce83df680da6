"""The main flows, run by other SDKs than the suite's own: Node's ``openai`` package (tests/node/) and
older or newer Python ``openai`` releases (flows.py), each in a subprocess against a real server.

This module scripts the model for one run of the flows and hands the scripts everything they need
in one environment variable, ``OA_FLOWS`` (JSON), so the scripts hold no expectations of their own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TENANT_A_KEY, Server
from tests.upstream import Reply, ScriptedUpstream, ToolCalls, Turn

FACT = "The lighthouse keeper of Skarvholm island feeds exactly seventeen cats every morning."
OTHER = "The recipe calls for two cups of flour, one egg and a pinch of salt."
MARKER = "【0:0†island.md】"

#: Each flow's model turns; "chat" has none and gets the scripted server's echo.
_TURNS: dict[str, list[Turn]] = {
    "tools": [ToolCalls([("get_weather", '{"city": "Paris"}')]), Reply("It is 21 degrees in Paris.")],
    "stream": [Reply("Streaming works fine.", chunks=["Stream", "ing ", "works ", "fine."])],
    "stream_tools": [ToolCalls([("get_weather", '{"city": "Oslo"}')]), Reply("Oslo is cold.")],
    "cancel": [ToolCalls([("get_weather", '{"city": "Rome"}')])],
    "search": [
        ToolCalls([("file_search", '{"query": "lighthouse keeper cats"}')]),
        Reply(f"The keeper feeds seventeen cats{MARKER}."),
    ],
    "search_stream": [
        ToolCalls([("file_search", '{"query": "how many cats"}')]),
        Reply(f"Seventeen{MARKER}.", chunks=["Seven", "teen【0", ":0†isl", "and.md】", "."]),
    ],
}


def flows_env(server: Server, upstream: ScriptedUpstream) -> dict[str, str]:
    """Scripts fresh models for one run of the flows; returns the environment for the script."""
    models = {flow: f"sdk-{flow}-{uuid.uuid4().hex}" for flow in ["chat", *_TURNS]}
    for flow, turns in _TURNS.items():
        upstream.script(models[flow], *turns)
    flows: dict[str, object] = {
        "base_url": server.base_url,
        "api_key": TENANT_A_KEY,
        "models": models,
        "texts": {flow: turns[-1].text for flow, turns in _TURNS.items() if isinstance(turns[-1], Reply)},
        "fact": FACT,
        "other": OTHER,
        "marker": MARKER,
    }
    return {**os.environ, "OA_FLOWS": json.dumps(flows)}


def run_flows(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> None:
    """Runs one flows script; fails the test with its whole output when it fails."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )


def require_tools(*names: str) -> None:
    """Skips the test when a tool is missing; fails it in CI, where everything must run."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not found on PATH"
    if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):  # set by .ci/run: this is CI
        pytest.fail(f"{message}: required in CI")
    pytest.skip(message)


def cached_install(target: Path, inputs: str, install: Callable[[Path], None]) -> Path:
    """Builds ``target`` with ``install`` once per ``inputs`` (what it installs) and reuses it after.

    A stamp holding the hash of ``inputs`` is written last, so an interrupted install is redone; a
    lock beside ``target`` keeps two test processes from building it at once.
    """
    key = hashlib.sha256(inputs.encode()).hexdigest()
    stamp = target / ".openassistants-installed"
    if stamp.is_file() and stamp.read_text() == key:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == key:
            return target
        shutil.rmtree(target, ignore_errors=True)
        install(target)
        stamp.write_text(key)
    return target


def check_call(command: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    """Runs an install step; fails the test with its output when it fails."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
