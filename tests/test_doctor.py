"""``openassistants doctor`` as a user runs it, a real subprocess: a healthy set-up passes (the scripted
model server, a temporary data dir, each database backend), and broken ones say what to fix and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openassistants.code_interpreter.probe import sandbox_problem
from openassistants.config import Settings
from tests.processes import process_env
from tests.servers import free_port
from tests.upstream import Reply, ScriptedUpstream


def doctor(path: str | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
    env = process_env(**settings)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "openassistants", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def lines_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return done.stdout.splitlines()


def test_a_healthy_set_up_passes(
    upstream: ScriptedUpstream, database_url: str | None, tmp_path: Path, model: str
) -> None:
    problem = sandbox_problem(Settings())
    if problem is not None:
        pytest.skip(f"no sandbox here: {problem}")
    upstream.script(model, Reply("listed"))  # the scripted server lists the names it was given
    routes = {"gpt-4o": {"base_url": upstream.url, "model": model}}
    data_dir = tmp_path / "data"
    database = {"database_url": database_url} if database_url else {}
    done = doctor(
        data_dir=str(data_dir), llm_base_url=upstream.url, llm_routes=json.dumps(routes), **database
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = lines_of(done)
    if database_url is None:
        path = data_dir / "openassistants.db"
        assert (
            lines[0] == f"ok    database    SQLite at {path.resolve()}: not created yet; `serve` creates it"
        )
        assert not data_dir.exists()  # the doctor changes nothing
    else:
        assert lines[0].startswith("ok    database    PostgreSQL at 127.0.0.1:5432/oa_test_")
    assert lines[1].startswith(f"ok    model       {upstream.url} (OPENASSISTANTS_LLM_BASE_URL) answers: ")
    assert model in lines[1] or "…" in lines[1]
    assert lines[2] == f"ok    route       'gpt-4o' → {model!r} at {upstream.url}: listed there"
    assert lines[3] == "ok    embeddings  the local model multilingual-e5-small: embeds (384 dimensions)"
    assert lines[4] == "ok    sandbox     bubblewrap runs model code (code_interpreter) sandboxed"
    assert lines[-1] == "Everything checked is working."


@pytest.mark.parametrize(
    ("database_url", "words"),
    [
        (
            "postgresql+asyncpg://127.0.0.1:5432/oa_no_such_database",
            'database "oa_no_such_database" does not exist',
        ),
        (f"postgresql+asyncpg://someone:pw-0123@127.0.0.1:{free_port()}/nope", "Connect call failed"),
    ],
)
def test_a_broken_set_up_says_what_to_fix(
    upstream: ScriptedUpstream, tmp_path: Path, database_url: str, words: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    routes = {"gpt-4*": {"base_url": upstream.url, "api_key": "sk-route-0123", "model": "no-such-model"}}
    done = doctor(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        llm_base_url=dead,
        llm_routes=json.dumps(routes),
        embeddings_base_url=dead,
        path=str(tmp_path),  # no bwrap on it
    )

    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "FAIL  database    " in out and words in out
    assert "fix: set OPENASSISTANTS_DATABASE_URL to postgresql+asyncpg://user@host/db" in out
    assert f"FAIL  model       {dead} (OPENASSISTANTS_LLM_BASE_URL) refused the connection" in out
    assert f"fix: start an OpenAI-compatible model server at {dead} (Ollama: `ollama serve`), or set " in out
    assert "OPENASSISTANTS_LLM_BASE_URL to one" in out
    # The route's own upstream answers, but does not serve the model it names.
    assert (
        f"ok    model       {upstream.url} (the route 'gpt-4*' in OPENASSISTANTS_LLM_ROUTES) answers" in out
    )
    assert f"FAIL  route       'gpt-4*' → 'no-such-model': {upstream.url} does not list it" in out
    assert "(Ollama: `ollama pull no-such-model`)" in out
    assert f"FAIL  embeddings  {dead} (OPENASSISTANTS_EMBEDDINGS_BASE_URL)" in out
    assert "FAIL  sandbox     code_interpreter cannot run model code" in out
    assert "bubblewrap (bwrap) is not on PATH: install it (apt-get install bubblewrap)" in out
    assert lines_of(done)[-1] == "5 problem(s): see the fixes above."
    for secret in ("pw-0123", "sk-route-0123"):
        assert secret not in out + done.stderr


def test_a_setting_doctor_cannot_even_read_is_one_line(tmp_path: Path) -> None:
    """A value no check could start from is refused as every command refuses it: one line, status 2."""
    done = doctor(data_dir=str(tmp_path / "data"), database_url="nonsense")
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert "OPENASSISTANTS_DATABASE_URL" in line and "Traceback" not in done.stderr
