"""The Responses and Conversations APIs through the official ``openai`` npm package
(tests/node/responses.test.mjs: text, the stream helper, a function call round trip, a conversation,
a background response, compaction), run by Node's own test runner against a real server."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.conftest import TENANT_A_KEY, Server
from tests.sdk_flows import run_flows
from tests.test_node_sdk import NODE_DIR, node_modules
from tests.upstream import Reply, ScriptedUpstream, ToolCalls, Turn

# One backend, as tests/test_node_sdk.py: the SDK's reading of the wire does not depend on it.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

__all__ = ["node_modules"]  # the fixture, shared with the Assistants flows

#: Each test's model turns; the last reply's text is what the test expects.
_TURNS: dict[str, list[Turn]] = {
    "text": [Reply("Hello from Node.")],
    "stream": [Reply("Streaming works fine.", chunks=["Stream", "ing ", "works ", "fine."])],
    "tools": [ToolCalls([("get_weather", '{"city": "Paris"}')]), Reply("It is sunny in Paris.")],
    "conversation": [Reply("Hello Ada."), Reply("Your name is Ada.")],
    "background": [Reply("Done in the background.", chunks=["Done ", "in the ", "background."])],
    "compact": [Reply("Sunny."), Reply("Asked about Paris; sunny."), Reply("Take sunglasses.")],
}


def test_node_sdk_responses(server: Server, upstream: ScriptedUpstream, node_modules: object) -> None:
    models = {name: f"node-resp-{name}-{uuid.uuid4().hex}" for name in _TURNS}
    for name, turns in _TURNS.items():
        upstream.script(models[name], *turns)
    texts = {name: turns[-1].text for name, turns in _TURNS.items() if isinstance(turns[-1], Reply)}
    texts["conversation_first"] = "Hello Ada."
    setup = {"base_url": server.base_url, "api_key": TENANT_A_KEY, "models": models, "texts": texts}
    env = {**os.environ, "OA_RESPONSES": json.dumps(setup)}
    run_flows(["node", "--test", "--test-reporter=spec", "responses.test.mjs"], cwd=NODE_DIR, env=env)
