"""The official ``openai`` npm package against our server: the main flows (tests/node/flows.test.mjs)
with each release pinned in tests/node/package.json, run by Node's own test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.sdk_flows import cached_install, check_call, flows_env, require_tools, run_flows
from tests.upstream import ScriptedUpstream

# One backend: what these tests check is the SDKs' reading of the wire format, which does not depend
# on the database; the suite's own SDK tests run every flow on both.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

NODE_DIR = Path(__file__).parent / "node"
#: The npm aliases of package.json, one per release of the SDK under test.
PACKAGES = sorted(json.loads((NODE_DIR / "package.json").read_text())["dependencies"])


@pytest.fixture(scope="module")
def node_modules() -> Path:
    require_tools("node", "npm")
    lockfile = (NODE_DIR / "package-lock.json").read_text()
    install = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    return cached_install(NODE_DIR / "node_modules", lockfile, lambda _: check_call(install, cwd=NODE_DIR))


@pytest.mark.parametrize("package", PACKAGES)
def test_node_sdk_flows(server: Server, upstream: ScriptedUpstream, node_modules: Path, package: str) -> None:
    env = {**flows_env(server, upstream), "OA_NODE_SDK": package}
    run_flows(["node", "--test", "--test-reporter=spec", "flows.test.mjs"], cwd=NODE_DIR, env=env)
