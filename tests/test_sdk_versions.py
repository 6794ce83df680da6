"""The main flows (tests/sdk_flows/flows.py) through releases of the Python ``openai`` SDK that apps
in the wild pin, each in a venv of its own under ``.sdk-venvs/`` (built once, reused after)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.conftest import Server
from tests.sdk_flows import cached_install, check_call, flows_env, run_flows
from tests.upstream import ScriptedUpstream

# One backend: what these tests check is the SDKs' reading of the wire format, which does not depend
# on the database; the suite's own SDK tests run every flow on both.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

ROOT = Path(__file__).parent.parent
FLOWS_SCRIPT = Path(__file__).parent / "sdk_flows" / "flows.py"


@dataclass(frozen=True)
class Release:
    requirements: list[str]
    #: Whether the release's models still describe today's API, so that the SDK's strict response
    #: validation can check every field.
    strict: bool = True


#: Each release tested.
RELEASES: dict[str, Release] = {
    # Early Assistants v2 (April 2024): vector stores under `client.beta`. It passes `proxies=` to
    # httpx, which httpx 0.28 removed, so it needs the last httpx before that. Not strict: its models
    # require fields the API dropped soon after (VectorStore.bytes, now usage_bytes;
    # file_citation.quote), which the hosted API no longer sends either.
    "1.21.2": Release(["openai==1.21.2", "httpx==0.27.2"], strict=False),
    # The last 1.x: what an app pinned to `openai<2` gets.
    "1.109.1": Release(["openai==1.109.1"]),
    # The newest release (still with the Assistants API), as the suite's own dev pin.
    "3.54.0": Release(["openai==3.54.0"]),
}


def _build_venv(target: Path, requirements: list[str]) -> None:
    check_call([sys.executable, "-m", "venv", str(target)])
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    check_call([*pip, *requirements])


@pytest.fixture(scope="module", params=list(RELEASES))
def release(request: pytest.FixtureRequest) -> tuple[Path, Release]:
    """The Python of a venv with one SDK release installed, and the release."""
    release = RELEASES[request.param]
    if request.param == openai.__version__ and len(release.requirements) == 1:
        return Path(sys.executable), release  # the suite's own venv has exactly this release
    target = ROOT / ".sdk-venvs" / f"openai-{request.param}"
    inputs = "\n".join([sys.executable, sys.version, *release.requirements])
    cached_install(target, inputs, lambda t: _build_venv(t, release.requirements))
    return target / "bin" / "python", release


def test_sdk_release_flows(server: Server, upstream: ScriptedUpstream, release: tuple[Path, Release]) -> None:
    python, settings = release
    env = {**flows_env(server, upstream), "OA_STRICT": "1" if settings.strict else "0"}
    run_flows([str(python), str(FLOWS_SCRIPT)], cwd=ROOT, env=env)
