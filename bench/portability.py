"""Issue 16: export and import throughput, next to the database's own bulk read and write in the same run.

The data set is written directly as an archive (the format is the interface, docs/data.md): one
tenant, THREADS threads of MESSAGES_PER_THREAD messages each (100,000 messages), and FILES files of
FILE_BYTES each. Then, on each backend (SQLite, then PostgreSQL when reachable), through the real CLI
(``python -m openassistants import|export``, process start-up included):

    import the generated archive into a fresh deployment   objects/s, MB/s
    export that deployment to a new archive                objects/s, MB/s

and, as the baseline, the same message rows written and read back by the driver alone, in one
transaction (SQLite: ``executemany`` INSERT then ``SELECT *``; PostgreSQL: ``COPY`` in then ``SELECT *``)
into a scratch table of the same columns, without indexes, checks or files.

    python -m bench.portability [--threads 1000] [--messages 100] [--files 1000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import asyncpg

from bench import harness
from openassistants.portability.archive import ArchiveWriter
from openassistants.tenants import tenant_for_key

API_KEY = "sk-bench-portability"
TEXT = "Summarise the attached quarterly report in three bullet points, then list the open questions. "
FILE_BYTES = 16 * 1024


def _message(tenant: str, thread_id: str, n: int, created_at: int) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "tenant_id": tenant,
        "thread_id": thread_id,
        "created_at": created_at,
        "role": "user" if n % 2 == 0 else "assistant",
        "status": "completed",
        "content": [{"type": "text", "text": {"value": f"{n}: {TEXT}", "annotations": []}}],
        "attachments": [],
        "metadata": {"n": str(n)},
        "assistant_id": None,
        "run_id": None,
        "completed_at": None,
        "incomplete_at": None,
        "incomplete_details": None,
    }


def generate(path: Path, threads: int, per_thread: int, files: int) -> list[dict[str, Any]]:
    """Writes the archive; returns its message rows (for the baseline)."""
    tenant = tenant_for_key(API_KEY)
    writer = ArchiveWriter(path)
    now = int(time.time()) - 86_400
    content = (TEXT * (FILE_BYTES // len(TEXT) + 1)).encode()[:FILE_BYTES]
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(files):
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            blob = Path(scratch) / file_id
            blob.write_bytes(content)
            writer.copy_blob(file_id, blob)
            writer.write(
                "files",
                {"id": file_id, "tenant_id": tenant, "created_at": now + n, "bytes": FILE_BYTES,
                 "filename": f"report-{n}.txt", "purpose": "assistants", "status": "processed",
                 "status_details": None, "expires_at": None},
            )  # fmt: skip
    thread_ids = [f"thread_{uuid.uuid4().hex[:24]}" for _ in range(threads)]
    for n, thread_id in enumerate(thread_ids):
        writer.write(
            "threads",
            {
                "id": thread_id,
                "tenant_id": tenant,
                "created_at": now + n,
                "tool_resources": {},
                "metadata": {},
            },
        )
    messages = []
    for thread_id in thread_ids:
        for n in range(per_thread):
            row = _message(tenant, thread_id, n, now + n)
            writer.write("messages", row)
            messages.append(row)
    writer.commit({"software": "bench.portability", "tenants": [tenant], "notes": []})
    return messages


def _cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "openassistants", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _archive_size(path: Path) -> tuple[int, int]:
    manifest = json.loads((path / "manifest.json").read_text())
    return sum(manifest["counts"].values()), sum(e["bytes"] for e in manifest["files"].values())


_COLUMNS = list(_message("t", "thread_x", 0, 0))


def _as_values(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(json.dumps(v) if isinstance(v, dict | list) else v for v in m.values()) for m in messages]


def sqlite_baseline(path: Path, messages: list[dict[str, Any]]) -> tuple[float, float]:
    """Seconds to insert then to read back the message rows, sqlite3 alone."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"CREATE TABLE raw ({', '.join(_COLUMNS)})")
    values = _as_values(messages)
    started = time.perf_counter()
    with connection:
        connection.executemany(f"INSERT INTO raw VALUES ({', '.join('?' * len(_COLUMNS))})", values)
    written = time.perf_counter() - started
    started = time.perf_counter()
    rows = connection.execute("SELECT * FROM raw").fetchall()
    read = time.perf_counter() - started
    assert len(rows) == len(messages)
    connection.close()
    return written, read


async def postgres_baseline(dsn: str, messages: list[dict[str, Any]]) -> tuple[float, float]:
    """Seconds to COPY the message rows in, then to read them back, asyncpg alone."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"CREATE TABLE raw ({', '.join(f'{c} text' for c in _COLUMNS)})")
        values = [tuple(None if v is None else str(v) for v in row) for row in _as_values(messages)]
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table("raw", records=values, columns=_COLUMNS)
        written = time.perf_counter() - started
        started = time.perf_counter()
        rows = await connection.fetch("SELECT * FROM raw")
        read = time.perf_counter() - started
        assert len(rows) == len(messages)
        return written, read
    finally:
        await connection.close()


def measure(backend: str, archive: Path, messages: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    data_dir = work / backend
    settings = {"api_keys": API_KEY, "data_dir": str(data_dir)}
    with harness.postgres_database() if backend == "postgres" else nullcontext(None) as url:
        if url:
            settings["database_url"] = url
        env = harness.server_env(**settings)
        objects, size = _archive_size(archive)
        imported = _cli(env, "import", str(archive))
        exported = _cli(env, "export", str(work / f"{backend}-export"))
        if url:
            written, read = asyncio.run(postgres_baseline(url.replace("+asyncpg", ""), messages))
        else:
            written, read = sqlite_baseline(work / "raw.db", messages)
    return {
        "backend": backend,
        "objects": objects,
        "megabytes": size / 1e6,
        "import_s": imported,
        "export_s": exported,
        "baseline_write_s": written,
        "baseline_read_s": read,
        "import_objects_per_s": objects / imported,
        "export_objects_per_s": objects / exported,
        "import_mb_per_s": size / 1e6 / imported,
        "export_mb_per_s": size / 1e6 / exported,
        "baseline_write_rows_per_s": len(messages) / written,
        "baseline_read_rows_per_s": len(messages) / read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        messages = generate(work / "archive", args.threads, args.messages, args.files)
        print(
            f"generated {len(messages)} messages, {args.files} files in {time.perf_counter() - started:.1f} s"
        )
        for backend in args.backends.split(","):
            if backend == "postgres" and harness.postgres_version() is None:
                print("PostgreSQL not reachable; skipped")
                continue
            result = measure(backend, work / "archive", messages, work)
            print(json.dumps(result), flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
