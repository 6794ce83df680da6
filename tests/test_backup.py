"""``openassistants backup`` and ``restore`` on the embedded default (SQLite and blobs), as an operator
runs them: backup against a live server process taking a burst of writes, restore into a fresh data
directory, and a new server there serves everything acknowledged before the backup began, intact."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.processes import ServerProcess, process_env

KEYS = ("sk-backup-tenant-a", "sk-backup-tenant-b")
ENV = process_env(api_keys=",".join(KEYS), access_log="false")
PAGE = 7  # small pages: every list is read across several


def command(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openassistants", *args], env=env, capture_output=True, text=True, timeout=300
    )


Connect = Callable[[ServerProcess, str], openai.OpenAI]


@pytest.fixture
def sdk() -> Iterator[Connect]:
    """SDK clients for a server and a key, all closed when the test ends."""
    opened: list[openai.OpenAI] = []

    def connect(server: ServerProcess, key: str) -> openai.OpenAI:
        opened.append(openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


@dataclass
class Acknowledged:
    """What one tenant's client was told the server stored."""

    assistants: list[Any] = field(default_factory=list)
    threads: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, list[Any]] = field(default_factory=dict)
    files: dict[str, tuple[Any, bytes]] = field(default_factory=dict)


def write_some(client: openai.OpenAI, seen: Acknowledged, label: str, messages: int) -> None:
    """An assistant, a thread of ``messages`` messages and a file, each recorded once acknowledged."""
    seen.assistants.append(client.beta.assistants.create(model="m", name=f"assistant {label}"))
    thread = client.beta.threads.create(metadata={"label": label})
    seen.threads[thread.id] = thread
    seen.messages[thread.id] = []
    for n in range(messages):
        message = client.beta.threads.messages.create(thread.id, role="user", content=f"{label} #{n}")
        seen.messages[thread.id].append(message)
    content = f"{label}\n".encode() * 500
    uploaded = client.files.create(file=(f"{label}.txt", content), purpose="assistants")
    seen.files[uploaded.id] = (uploaded, content)


def every(page: Any) -> list[Any]:
    return list(page)  # the SDK's pages fetch the next page as they are iterated


def snapshot(client: openai.OpenAI) -> dict[str, Any]:
    """Everything the tenant can list, each list read through all its pages."""
    files = every(client.files.list(limit=PAGE))
    return {
        "assistants": every(client.beta.assistants.list(limit=PAGE)),
        "files": files,
        "contents": {f.id: client.files.content(f.id).content for f in files},
    }


def test_backup_of_a_live_server_restores_everything_acknowledged(tmp_path: Path, sdk: Connect) -> None:
    live = ServerProcess(tmp_path / "live", ENV)
    live.start()
    try:
        clients = [sdk(live, key) for key in KEYS]
        before = [Acknowledged() for _ in KEYS]
        for tenant, (client, seen) in enumerate(zip(clients, before, strict=True)):
            for n in range(3):
                write_some(client, seen, f"before-{tenant}-{n}", messages=2 * PAGE + 3)
        listed_before = [snapshot(client) for client in clients]

        # The burst: both tenants keep writing while the backup runs.
        during = [Acknowledged() for _ in KEYS]
        stop, started = threading.Event(), threading.Barrier(len(KEYS) + 1)

        def burst(client: openai.OpenAI, seen: Acknowledged, tenant: int) -> None:
            write_some(client, seen, f"during-{tenant}-start", messages=3)
            started.wait()
            n = 0
            while not stop.is_set():
                write_some(client, seen, f"during-{tenant}-{n}", messages=3)
                n += 1

        writers = [
            threading.Thread(target=burst, args=(client, seen, tenant))
            for tenant, (client, seen) in enumerate(zip(clients, during, strict=True))
        ]
        for writer in writers:
            writer.start()
        started.wait()  # each writer is past its first write: the backup runs amid the burst
        try:
            made = command("backup", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "live"))
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        assert made.returncode == 0, made.stderr
        assert made.stderr == "" and "backed up" in made.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", "live"]  # no temporary left
    finally:
        live.stop()

    restored = command("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "fresh"))
    assert restored.returncode == 0, restored.stderr
    again = command("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "fresh"))
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr

    server = ServerProcess(tmp_path / "fresh", ENV)
    server.start()
    try:
        for client, seen, listed in zip(
            [sdk(server, key) for key in KEYS], before, listed_before, strict=True
        ):
            _assert_restored(client, seen, listed)
        for client, seen in zip([sdk(server, key) for key in KEYS], during, strict=True):
            _assert_intact(client, seen)
    finally:
        server.stop()


def _assert_restored(client: openai.OpenAI, seen: Acknowledged, listed: dict[str, Any]) -> None:
    """Everything acknowledged before the backup is there, equal, in the same order on every page."""
    now = snapshot(client)
    before_ids = {a.id for a in listed["assistants"]}
    assert [a for a in now["assistants"] if a.id in before_ids] == listed["assistants"]
    file_ids = {f.id for f in listed["files"]}
    assert [f for f in now["files"] if f.id in file_ids] == listed["files"]
    for file_id, (uploaded, content) in seen.files.items():
        assert client.files.retrieve(file_id) == uploaded
        assert now["contents"][file_id] == content
    for thread_id, thread in seen.threads.items():
        assert client.beta.threads.retrieve(thread_id) == thread
        pages = every(client.beta.threads.messages.list(thread_id, limit=PAGE, order="asc"))
        assert pages == seen.messages[thread_id]
        newest_first = every(client.beta.threads.messages.list(thread_id, limit=PAGE, order="desc"))
        assert newest_first == seen.messages[thread_id][::-1]


def _assert_intact(client: openai.OpenAI, seen: Acknowledged) -> None:
    """Of what came during the backup, whatever the backup holds is exactly what was acknowledged; and
    every file the restored server lists has its bytes."""
    assistants = {a.id: a for a in every(client.beta.assistants.list(limit=100))}
    for assistant in seen.assistants:
        assert assistants.get(assistant.id, assistant) == assistant
    for thread_id, thread in seen.threads.items():
        try:
            assert client.beta.threads.retrieve(thread_id) == thread
        except openai.NotFoundError:
            continue
        kept = every(client.beta.threads.messages.list(thread_id, limit=PAGE, order="asc"))
        assert kept == seen.messages[thread_id][: len(kept)]  # a prefix: messages commit in order
    for listed in every(client.files.list(limit=PAGE)):
        content = client.files.content(listed.id).content
        assert len(content) == listed.bytes
        if listed.id in seen.files:
            assert (listed, content) == seen.files[listed.id]


def test_restore_refuses_a_damaged_backup(tmp_path: Path, sdk: Connect) -> None:
    live = ServerProcess(tmp_path / "live", ENV)
    live.start()
    try:
        write_some(sdk(live, KEYS[0]), Acknowledged(), "one", messages=1)
        made = command("backup", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "live"))
        assert made.returncode == 0, made.stderr
    finally:
        live.stop()
    (blob,) = (tmp_path / "backup" / "files").glob("*/*")
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    refused = command("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "fresh"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "damaged" in refused.stderr
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())

    blob.unlink()
    refused = command("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "fresh"))
    assert refused.returncode == 2 and "missing" in refused.stderr


def test_restore_with_force_replaces_a_used_data_dir(tmp_path: Path, sdk: Connect) -> None:
    data = tmp_path / "data"
    kept, later = Acknowledged(), Acknowledged()
    server = ServerProcess(data, ENV)
    server.start()
    try:
        write_some(sdk(server, KEYS[0]), kept, "kept", messages=2)
        made = command("backup", str(tmp_path / "backup"), "--data-dir", str(data))
        assert made.returncode == 0, made.stderr
        write_some(sdk(server, KEYS[0]), later, "later", messages=2)
    finally:
        server.stop()
    forced = command("restore", str(tmp_path / "backup"), "--data-dir", str(data), "--force")
    assert forced.returncode == 0, forced.stderr

    server = ServerProcess(data, ENV)
    server.start()
    try:
        client = sdk(server, KEYS[0])
        (file_id,) = kept.files
        assert client.files.content(file_id).content == kept.files[file_id][1]
        (thread_id,) = kept.threads
        assert every(client.beta.threads.messages.list(thread_id, order="asc")) == kept.messages[thread_id]
        assert [f.id for f in every(client.files.list())] == [file_id]
        for gone in (*later.threads, *later.files):
            with pytest.raises(openai.NotFoundError):
                (client.beta.threads.retrieve if gone.startswith("thread") else client.files.retrieve)(gone)
    finally:
        server.stop()


@pytest.mark.parametrize(("verb", "tool"), [("backup", "pg_dump"), ("restore", "pg_restore")])
def test_postgres_is_refused_with_the_procedure_named(tmp_path: Path, verb: str, tool: str) -> None:
    env = {**ENV, "OPENASSISTANTS_DATABASE_URL": "postgresql+asyncpg://app:pw@127.0.0.1/test"}
    refused = command(verb, str(tmp_path / "backup"), env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert tool in line and "docs/operations.md" in line


@pytest.mark.parametrize("existing", [True, False])
def test_backup_refuses_to_overwrite_or_to_back_up_nothing(tmp_path: Path, existing: bool) -> None:
    data = tmp_path / "data"
    data.mkdir()
    target = tmp_path / "backup"
    if existing:
        (data / "openassistants.db").write_bytes(b"")
        target.mkdir()
    refused = command("backup", str(target), "--data-dir", str(data))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert ("already exists" if existing else "no database") in refused.stderr
