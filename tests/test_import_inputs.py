"""What ``openassistants import`` takes besides its own archives (``assistants-thread-export/v1``
exports and folders of SDK JSON dumps, from tests/fixtures/), and how it refuses bad input: one clear
``error:`` line, a non-zero exit, and nothing written."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from tests.conftest import TENANT_A_KEY, TENANT_B_KEY
from tests.portability import Outcome, cli
from tests.processes import process_env
from tests.servers import make_settings, running_server

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = f"{TENANT_A_KEY},{TENANT_B_KEY}"


def _env(data_dir: Path, keys: str = KEYS, database_url: str | None = None) -> dict[str, str]:
    on = {"database_url": database_url} if database_url else {}
    return process_env(api_keys=keys, data_dir=str(data_dir), **on)


@contextmanager
def _serving(
    data_dir: Path, key: str = TENANT_A_KEY, database_url: str | None = None, **overrides: object
) -> Iterator[openai.OpenAI]:
    keys = [TENANT_A_KEY, TENANT_B_KEY, key]
    settings = make_settings(str(data_dir), database_url, api_keys=keys, **overrides)
    with running_server(settings) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _refused(outcome: Outcome, *words: str) -> None:
    assert outcome.code != 0
    assert outcome.stdout == ""
    assert outcome.stderr.startswith("error: ") and outcome.stderr.count("\n") == 1, outcome.stderr
    for word in words:
        assert word in outcome.stderr


def _nothing_written(data_dir: Path) -> None:
    with _serving(data_dir) as client:
        assert client.beta.assistants.list().data == []
        assert client.files.list().data == []


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small archive of tenant A: an assistant, a file, a thread of three messages."""
    source = tmp_path_factory.mktemp("small")
    with _serving(source) as client:
        client.beta.assistants.create(model="m", name="kept", metadata={"a": "1"})
        notes = client.files.create(
            file=("notes.txt", b"The harbour master counts nine boats."), purpose="assistants"
        )
        store = client.vector_stores.create(name="harbour")
        client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=notes.id)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"m{n}"} for n in range(3)])
        assert thread.id
    with _serving(source, TENANT_B_KEY) as other:
        other.beta.assistants.create(model="m", name="tenant b's, not exported with tenant a's key")
    path = tmp_path_factory.mktemp("archives") / "small"
    outcome = cli(_env(source), "export", str(path), "--key", TENANT_A_KEY)
    assert outcome.code == 0, outcome.stderr
    return path


def _tampered(archive: Path, tmp_path: Path, name: str, edit: object) -> Path:
    """A copy of ``archive`` whose ``name`` is rewritten by ``edit`` (bytes -> bytes) and whose
    manifest is brought up to date, as another tool writing the format would."""
    copy = tmp_path / "tampered"
    shutil.copytree(archive, copy)
    target = copy / name
    target.write_bytes(edit(target.read_bytes()))  # type: ignore[operator]
    manifest = json.loads((copy / "manifest.json").read_text())
    data = target.read_bytes()
    manifest["files"][name] = {
        **manifest["files"][name],
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_thread_export_v1_comes_across_with_what_it_lacks_reported(tmp_path: Path) -> None:
    outcome = cli(_env(tmp_path), "import", str(FIXTURES / "thread_export"), "--key", TENANT_A_KEY)
    assert outcome.code == 0, outcome.stderr
    assert "file-hostedNotes00000000001 (notes.txt): no bytes" in outcome.stdout
    assert "thread_gone000000000000000" in outcome.stdout
    assert "vs_hosted000000000000000001" in outcome.stdout
    assert "run_hostedOld000000000001" in outcome.stdout
    with _serving(tmp_path) as client:
        assistant = client.beta.assistants.retrieve("asst_hosted0000000000000001")
        assert (assistant.created_at, assistant.metadata, assistant.temperature) == (
            1717000000,
            {"team": "ops"},
            0.7,
        )
        thread_id = "thread_hosted000000000000001"
        messages = client.beta.threads.messages.list(thread_id, order="asc").data
        assert [m.id for m in messages] == ["msg_hosted00000000000000001", "msg_hosted00000000000000002"]
        assert messages[0].attachments[0].file_id == "file-hostedNotes00000000001"  # type: ignore[index]
        [citation] = messages[1].content[0].text.annotations  # type: ignore[union-attr]
        assert citation.file_citation.file_id == "file-hostedNotes00000000001"  # type: ignore[union-attr]
        [run] = client.beta.threads.runs.list(thread_id).data
        assert run.usage is not None and run.usage.total_tokens == 366
        steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc").data
        assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    again = cli(_env(tmp_path), "import", str(FIXTURES / "thread_export"), "--key", TENANT_A_KEY)
    assert again.code == 0 and "already here, unchanged" in again.stdout


def test_sdk_dumps_come_across_into_a_serving_deployment_which_embeds_hosted_stores_again(
    tmp_path: Path,
) -> None:
    with _serving(tmp_path, TENANT_B_KEY) as client:
        outcome = cli(_env(tmp_path), "import", str(FIXTURES / "sdk_dumps"), "--key", TENANT_B_KEY)
        assert outcome.code == 0, outcome.stderr
        assert "file-dumpLost0000000000001 (lost.pdf): no bytes" in outcome.stdout
        assert "will be chunked and embedded here" in outcome.stdout
        thread_id = "thread_dump000000000000001"
        messages = client.beta.threads.messages.list(thread_id, order="asc").data
        assert [m.role for m in messages] == ["user", "assistant"]
        assert client.files.content("file-dumpBook0000000000001").text.startswith("The lighthouse keeper")
        store_id = "vs_dump000000000000000001"
        done = client.vector_stores.files.poll("file-dumpBook0000000000001", vector_store_id=store_id)
        assert done.status == "completed" and done.attributes == {"genre": "sea"}
        [hit] = client.vector_stores.search(store_id, query="how many cats").data
        assert "seventeen cats" in hit.content[0].text
        assert client.beta.threads.runs.list(thread_id).data[0].usage.total_tokens == 912  # type: ignore[union-attr]


def test_one_tenant_moves_to_the_key_given(archive: Path, tmp_path: Path) -> None:
    assert len(json.loads((archive / "manifest.json").read_text())["tenants"]) == 1
    outcome = cli(_env(tmp_path, "sk-new-owner"), "import", str(archive), "--key", "sk-new-owner")
    assert outcome.code == 0, outcome.stderr
    with _serving(tmp_path, "sk-new-owner") as client:
        assert [a.name for a in client.beta.assistants.list()] == ["kept"]
    with _serving(tmp_path, TENANT_A_KEY) as client:
        assert client.beta.assistants.list().data == []


def test_vectors_of_another_embedder_are_made_again(archive: Path, tmp_path: Path) -> None:
    def other_embedder(manifest: bytes) -> bytes:
        return json.dumps({**json.loads(manifest), "embedder": {"identity": "remote:another-model"}}).encode()

    copy = tmp_path / "copy"
    shutil.copytree(archive, copy)
    (copy / "manifest.json").write_bytes(other_embedder((copy / "manifest.json").read_bytes()))
    outcome = cli(_env(tmp_path / "target"), "import", str(copy))
    assert outcome.code == 0, outcome.stderr
    assert "chunks were embedded by remote:another-model" in outcome.stdout
    with _serving(tmp_path / "target") as client:
        [store] = client.vector_stores.list().data
        [hit] = client.vector_stores.search(store.id, query="how many boats").data
        assert hit.content[0].text == "The harbour master counts nine boats."


def test_a_conflicting_id_refuses_the_import_or_is_skipped(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert cli(_env(target), "import", str(archive)).code == 0
    renamed = _tampered(archive, tmp_path, "assistants.jsonl", lambda b: b.replace(b'"kept"', b'"renamed"'))
    refused = cli(_env(target), "import", str(renamed))
    assert (
        refused.code != 0
        and "1 object(s) conflict" in refused.stderr
        and "nothing was imported" in refused.stderr
    )
    skipped = cli(_env(target), "import", str(renamed), "--on-conflict", "skip")
    assert skipped.code == 0 and "skipped: assistant " in skipped.stdout
    with _serving(target) as client:
        assert [a.name for a in client.beta.assistants.list()] == ["kept"]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("corrupt", ("checksum mismatch",)),
        ("truncated", ("checksum mismatch",)),
        ("version", ("version 99",)),
        ("missing blob", ("missing",)),
        ("bad line", ("line 2", "not valid JSON")),
        ("path in an id", ("is not a valid id",)),
        ("orphan message", ("is not in threads.jsonl",)),
        ("linked blob", ("symbolic link",)),
        ("integer out of range", ("messages.created_at", "out of range")),
    ],
)
def test_bad_archives_are_refused_whole(
    archive: Path, tmp_path: Path, damage: str, words: tuple[str, ...]
) -> None:
    broken = tmp_path / "broken"
    if damage == "corrupt":
        shutil.copytree(archive, broken)
        data = bytearray((broken / "messages.jsonl").read_bytes())
        data[10] ^= 0x01
        (broken / "messages.jsonl").write_bytes(bytes(data))
    elif damage == "truncated":
        shutil.copytree(archive, broken)
        data = (broken / "messages.jsonl").read_bytes()
        (broken / "messages.jsonl").write_bytes(data[: len(data) // 2])
    elif damage == "version":
        shutil.copytree(archive, broken)
        manifest = json.loads((broken / "manifest.json").read_text())
        (broken / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    elif damage == "missing blob":
        shutil.copytree(archive, broken)
        next((broken / "blobs").iterdir()).unlink()
    elif damage == "linked blob":
        shutil.copytree(archive, broken)
        blob = next((broken / "blobs").iterdir())
        (tmp_path / "elsewhere").write_bytes(blob.read_bytes())
        blob.unlink()
        blob.symlink_to(tmp_path / "elsewhere")
    elif damage == "bad line":
        broken = _tampered(archive, tmp_path, "messages.jsonl", lambda b: b.replace(b"\n", b"\n{oops\n", 1))
    elif damage == "path in an id":
        broken = _tampered(
            archive, tmp_path, "files.jsonl", lambda b: b.replace(b'"id":"file-', b'"id":"../../file-')
        )
    elif damage == "integer out of range":
        broken = _tampered(
            archive,
            tmp_path,
            "messages.jsonl",
            lambda b: re.sub(rb'"created_at":\d+', b'"created_at":' + str(2**63).encode(), b, count=1),
        )
    else:
        broken = _tampered(
            archive,
            tmp_path,
            "messages.jsonl",
            lambda b: b.replace(b'"thread_id":"thread_', b'"thread_id":"thread_x', 1),
        )
    target = tmp_path / "target"
    _refused(cli(_env(target), "import", str(broken)), *words)
    _nothing_written(target)


def test_a_key_the_deployment_does_not_have_is_refused(archive: Path, tmp_path: Path) -> None:
    _refused(
        cli(_env(tmp_path), "import", str(archive), "--key", "sk-nobody"),
        "not one of OPENASSISTANTS_API_KEYS",
    )
    _refused(cli(_env(tmp_path), "export", str(tmp_path / "out"), "--key", "sk-nobody"), "--key")
    _refused(cli(_env(tmp_path), "import", str(tmp_path / "nowhere")), "no such file")
    _refused(cli(_env(tmp_path), "import", str(archive), "--on-conflict", "merge"), "--on-conflict")
    _refused(cli(_env(tmp_path), "export", str(archive)), "already exists")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_run_executing_when_exported_is_settled_not_left_active(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """SQLite settles it at start-up; PostgreSQL when its (long lapsed) lease is next checked."""
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    export = tmp_path / "export"
    shutil.copytree(FIXTURES / "thread_export", export)
    record_path = export / "threads" / "thread_hosted000000000000001.json"
    record = json.loads(record_path.read_text())
    record["runs"][0].update(status="in_progress", completed_at=None, expires_at=None)
    record_path.write_text(json.dumps(record))
    outcome = cli(_env(tmp_path / "target", database_url=url), "import", str(export), "--key", TENANT_A_KEY)
    assert outcome.code == 0, outcome.stderr
    with _serving(tmp_path / "target", database_url=url, run_lease_seconds=1.5) as client:
        run = client.beta.threads.runs.poll(
            "run_hosted00000000000000001", thread_id="thread_hosted000000000000001"
        )
        assert run.status == "failed" and run.last_error is not None


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        (
            "message.json",
            {
                "object": "thread.message",
                "id": "msg_x",
                "thread_id": "thread_dump000000000000001",
                "created_at": "today",
            },
            ("created_at",),
        ),
        ("thread.json", {"object": "thread", "id": "thread_../../x", "created_at": 1}, ("not a valid id",)),
        ("broken.json", "{not json", ("not valid JSON",)),
    ],
)
def test_bad_sdk_dumps_are_refused_whole(
    tmp_path: Path, name: str, content: object, words: tuple[str, ...]
) -> None:
    dump = tmp_path / "dump"
    shutil.copytree(FIXTURES / "sdk_dumps", dump)
    (dump / name).write_text(content if isinstance(content, str) else json.dumps(content))
    target = tmp_path / "target"
    _refused(cli(_env(target), "import", str(dump), "--key", TENANT_A_KEY), *words)
    _nothing_written(target)
