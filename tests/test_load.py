"""The mixed load of ``bench/load_mixed.py``, for about 30 s, on a fresh topology: two API processes and
one worker on PostgreSQL. The verdict: no 5xx, no message lost or duplicated, no run stuck (see the
module's docstring for every check)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.load_mixed import LoadConfig, Target, render, run_mixed_load
from bench.topology import Topology, log_problems, postgres_version, topology

LOAD_SECONDS = 30.0
USERS = 10


@pytest.fixture
def load_topology() -> Iterator[Topology]:
    if postgres_version() is None:
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI but is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    with topology(apis=2, workers=1) as topo:
        yield topo


async def test_mixed_load_loses_nothing_and_leaves_no_run_stuck(load_topology: Topology) -> None:
    config = LoadConfig(users=USERS, duration_s=LOAD_SECONDS)
    result = await run_mixed_load(Target.of(load_topology), config, load_topology.pids())
    problems = "\n".join(log_problems(load_topology)[:20])
    assert result["ok"], f"{render(result)}\nserver logs:\n{problems}"
    assert set(result["run_modes"]) == {"stream", "poll", "resume"}
    assert result["runs_completed"] >= 30, render(result)
