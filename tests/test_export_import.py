"""Moving a deployment: ``openassistants export`` from a serving SQLite deployment (under write load),
``openassistants import`` into a fresh PostgreSQL one, then everything compared through the SDK: every
list in both orders and all pages, retrieves, file contents, vector store search, and a new run on an
imported thread. Real processes and the official SDK throughout; only the model is scripted."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import TENANT_A_KEY, TENANT_B_KEY
from tests.portability import Outcome, cli, every_list
from tests.processes import ServerProcess, process_env
from tests.servers import postgres_available, temporary_postgres_database
from tests.test_vector_stores import FACT, FILLER
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

MARKER = "【0:0†island.md】"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
KEYS = f"{TENANT_A_KEY},{TENANT_B_KEY}"


@dataclass
class World:
    source: ServerProcess
    target: ServerProcess
    source_env: dict[str, str]
    target_env: dict[str, str]
    archive: Path
    export: Outcome
    imported: Outcome
    threads: dict[str, list[str]]  # by API key
    busy_thread: str
    store_id: str
    deleted: dict[str, str]
    before: dict[str, dict[str, Any]]  # every list per key, read from the source after the export

    def client(self, server: ServerProcess, key: str = TENANT_A_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def _env(upstream: ScriptedUpstream, **settings: str) -> dict[str, str]:
    return process_env(api_keys=KEYS, llm_base_url=upstream.url, llm_retry_backoff_seconds="0.01", **settings)


def _build(a: openai.OpenAI, b: openai.OpenAI, upstream: ScriptedUpstream) -> dict[str, Any]:
    """Every kind of object, for two tenants, through the API as a user would."""
    model = "script-portability"
    fact = a.files.create(file=("island.md", FACT.encode()), purpose="assistants")
    fillers = [
        a.files.create(file=(f"f{n}.txt", t.encode()), purpose="assistants").id for n, t in enumerate(FILLER)
    ]
    store = a.vector_stores.create(name="kb", metadata={"team": "lighthouse"})
    a.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=fillers)
    a.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=fact.id, attributes={"lang": "en"}
    )
    searcher = a.beta.assistants.create(
        model=model,
        name="searcher",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
        metadata={"v": "1"},
    )
    caller = a.beta.assistants.create(model=model, name="caller", tools=[WEATHER], temperature=0.3)  # type: ignore[list-item]
    gone_assistant = a.beta.assistants.create(model=model, name="gone")
    a.beta.assistants.delete(gone_assistant.id)
    gone_file = a.files.create(file=("gone.txt", b"bye"), purpose="assistants")
    a.files.delete(gone_file.id)

    upstream.script(
        model, ToolCalls([("file_search", '{"query": "lighthouse cats"}')]), Reply(f"Seventeen{MARKER}.")
    )
    cited = a.beta.threads.create(
        messages=[{"role": "user", "content": "How many cats?"}], metadata={"k": "v"}
    )
    run = a.beta.threads.runs.create_and_poll(thread_id=cited.id, assistant_id=searcher.id)
    assert run.status == "completed"

    upstream.script(model, ToolCalls([("get_weather", '{"city": "Oslo"}')]), Reply("12 degrees."))
    called = a.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = a.beta.threads.runs.create_and_poll(thread_id=called.id, assistant_id=caller.id)
    assert run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = a.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=called.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "12C"}]
    )
    assert run.status == "completed"

    chat = a.beta.threads.create()
    for n in range(5):
        a.beta.threads.messages.create(chat.id, role="user", content=f"note {n}", metadata={"n": str(n)})
    gone_message = a.beta.threads.messages.create(
        chat.id,
        role="user",
        content="attached",
        attachments=[{"file_id": fact.id, "tools": [{"type": "file_search"}]}],
    )
    a.beta.threads.messages.delete(gone_message.id, thread_id=chat.id)
    threads_a = [cited.id, called.id, chat.id]

    if shutil.which("bwrap"):
        coder = a.beta.assistants.create(model=model, name="coder", tools=[{"type": "code_interpreter"}])
        upstream.script(
            model, ToolCalls([("code_interpreter", json.dumps({"code": "print(6 * 7)"}))]), Reply("42")
        )
        coded = a.beta.threads.create(messages=[{"role": "user", "content": "6*7?"}])
        run = a.beta.threads.runs.create_and_poll(thread_id=coded.id, assistant_id=coder.id)
        assert run.status == "completed"
        threads_a.append(coded.id)

    b.files.create(file=("b.txt", b"tenant b's bytes"), purpose="assistants")
    b.beta.assistants.create(model=model, name="b's")
    b_thread = b.beta.threads.create(messages=[{"role": "user", "content": "hello from b"}])
    return {
        "threads": {TENANT_A_KEY: threads_a, TENANT_B_KEY: [b_thread.id]},
        "store_id": store.id,
        "deleted": {
            "assistant": gone_assistant.id,
            "file": gone_file.id,
            "message": gone_message.id,
            "chat": chat.id,
        },
    }


def _export_under_load(a: openai.OpenAI, env: dict[str, str], archive: Path) -> tuple[Outcome, str]:
    """Exports while another client keeps adding messages to a thread of its own."""
    busy = a.beta.threads.create()
    written = threading.Semaphore(0)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            a.beta.threads.messages.create(busy.id, role="user", content=f"busy {n}")
            n += 1
            written.release()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(5):
            written.acquire()
        outcome = cli(env, "export", str(archive))
    finally:
        stop.set()
        writer.join()
    return outcome, busy.id


@pytest.fixture(scope="module")
def world(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not postgres_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    root = tmp_path_factory.mktemp("moving")
    source_env = _env(upstream, data_dir=str(root / "sqlite"))
    source = ServerProcess(root / "sqlite", source_env)
    source.start()
    with temporary_postgres_database() as pg_url:
        target_env = _env(upstream, data_dir=str(root / "pg"), database_url=pg_url)
        target = ServerProcess(root / "pg", target_env)
        try:
            a = openai.OpenAI(base_url=source.base_url, api_key=TENANT_A_KEY, max_retries=0)
            b = openai.OpenAI(base_url=source.base_url, api_key=TENANT_B_KEY, max_retries=0)
            built = _build(a, b, upstream)
            archive = root / "archive"
            export, busy = _export_under_load(a, source_env, archive)
            imported = cli(target_env, "import", str(archive))
            target.start()
            clients = {
                k: openai.OpenAI(base_url=source.base_url, api_key=k, max_retries=0) for k in built["threads"]
            }
            before = {k: every_list(c, built["threads"][k]) for k, c in clients.items()}
            yield World(
                source, target, source_env, target_env, archive, export, imported,
                built["threads"], busy, built["store_id"], built["deleted"], before,
            )  # fmt: skip
        finally:
            target.stop()
            source.stop()


def test_export_and_import_report_what_they_did(world: World) -> None:
    assert world.export.code == 0, world.export.stderr
    assert world.export.stdout.startswith("exported ")
    manifest = json.loads((world.archive / "manifest.json").read_text())
    assert manifest["format"] == "openassistants-archive" and manifest["version"] == 1
    assert manifest["embedder"]["identity"].startswith("local:")
    assert len(manifest["tenants"]) == 2
    assert world.imported.code == 0, world.imported.stderr
    assert world.imported.stdout.startswith("imported ")


def test_every_list_retrieve_and_content_is_the_same_after_the_move(world: World) -> None:
    for key, threads in world.threads.items():
        after = every_list(world.client(world.target, key), threads)
        assert after == world.before[key]


def test_the_export_is_one_moment_although_written_to_meanwhile(world: World) -> None:
    source, target = world.client(world.source), world.client(world.target)
    moved = [m.id for m in target.beta.threads.messages.list(world.busy_thread, order="asc", limit=100)]
    written = [m.id for m in source.beta.threads.messages.list(world.busy_thread, order="asc", limit=100)]
    assert len(moved) >= 5
    assert written[: len(moved)] == moved


def test_deleted_objects_stay_deleted(world: World) -> None:
    target = world.client(world.target)
    with pytest.raises(openai.NotFoundError):
        target.beta.assistants.retrieve(world.deleted["assistant"])
    with pytest.raises(openai.NotFoundError):
        target.files.retrieve(world.deleted["file"])
    with pytest.raises(openai.NotFoundError):
        target.beta.threads.messages.retrieve(world.deleted["message"], thread_id=world.deleted["chat"])


def test_tenants_stay_apart(world: World) -> None:
    b = world.client(world.target, TENANT_B_KEY)
    assert [a.name for a in b.beta.assistants.list()] == ["b's"]
    with pytest.raises(openai.NotFoundError):
        b.beta.threads.retrieve(world.threads[TENANT_A_KEY][0])


def test_imported_vector_store_searches_as_before(world: World) -> None:
    query = "how many cats does the keeper feed"
    source = world.client(world.source).vector_stores.search(world.store_id, query=query)
    target = world.client(world.target).vector_stores.search(world.store_id, query=query)
    assert [(r.file_id, r.score) for r in target] == [(r.file_id, r.score) for r in source]
    assert next(iter(target)).content[0].text == FACT


def test_imported_thread_continues_with_a_new_run(
    world: World, upstream: ScriptedUpstream, model: str
) -> None:
    target = world.client(world.target)
    thread_id = world.threads[TENANT_A_KEY][0]
    upstream.script(model, Reply("Still seventeen."))
    assistant = target.beta.assistants.create(model=model)
    target.beta.threads.messages.create(thread_id, role="user", content="And now?")
    run = target.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant.id)
    assert run.status == "completed"
    history = upstream.requests(model)[0]["messages"]
    assert [m["content"] for m in history if m["role"] == "user"][:1] == ["How many cats?"]
    newest = target.beta.threads.messages.list(thread_id, limit=1).data[0]
    assert newest.content[0].text.value == "Still seventeen."  # type: ignore[union-attr]


def test_importing_again_changes_nothing_and_says_so(world: World) -> None:
    again = cli(world.target_env, "import", str(world.archive))
    assert again.code == 0, again.stderr
    assert again.stdout.strip().endswith("are already here, unchanged")
    b = world.client(world.target, TENANT_B_KEY)
    assert every_list(b, world.threads[TENANT_B_KEY]) == world.before[TENANT_B_KEY]
