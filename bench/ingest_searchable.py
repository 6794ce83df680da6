"""Issue 18: from upload to searchable, for a generated 100-page PDF, with the default set-up (the
local embedder, SQLite, nothing configured).

Through the ``openai`` SDK against a real ``openassistants serve``: upload the PDF, create a vector
store with it, poll the file until ``completed``, then search for a sentence found only on the last
page. A file is ``completed`` once its chunks are indexed (services/ingestion.py); its vectors follow.
The same run then watches the vectors arrive (chunks with a stored vector, read from the server's
SQLite database) for up to ``--vectors-seconds``: the time the file took to become searchable before
issue 18, when ``completed`` waited for every vector, is the time all its vectors take. The machine's
load average is recorded at each step.

    python -m bench.ingest_searchable [--pages 100] [--vectors-seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness

API_KEY = "sk-bench-ingest"
LINES_PER_PAGE = 46
CHARS_PER_LINE = 95
TARGET_SECONDS = 60.0


def page_texts(pages: int) -> list[list[str]]:
    """Lines of real prose-like text (standard-library source comments and docstrings), one list per
    page; the last page ends with a sentence found nowhere else."""
    lines: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            text = raw.strip().lstrip("#").strip()
            if len(text) > 30 and text.isascii() and not text.startswith(("def ", "class ", "import ")):
                lines.append(text[:CHARS_PER_LINE])
            if len(lines) >= pages * LINES_PER_PAGE:
                break
        if len(lines) >= pages * LINES_PER_PAGE:
            break
    result = [lines[i * LINES_PER_PAGE : (i + 1) * LINES_PER_PAGE] for i in range(pages)]
    result[-1].append(last_page_sentence(pages))
    return result


def last_page_sentence(pages: int) -> str:
    return f"The quartermaster of page {pages} keeps the violet ledger of marmalade shipments."


def minimal_pdf(pages: list[list[str]]) -> bytes:
    """A PDF 1.4 file written by hand: one Helvetica text stream per page, a cross-reference table."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 9 Tf", "11 TL", "40 800 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def vector_counts(database: Path) -> tuple[int, int]:
    """(chunks, chunks with a vector) in the server's database, read-only."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        total, done = conn.execute("SELECT count(*), sum(length(embedding) > 0) FROM chunks").fetchone()
    return int(total), int(done or 0)


async def measure(url: str, pdf: bytes, pages: int, database: Path, vectors_seconds: float) -> dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=600.0)
    result: dict[str, Any] = {"pages": pages, "pdf_bytes": len(pdf), "load_at_start": os.getloadavg()[0]}
    started = time.perf_counter()
    file = await client.files.create(file=("manual.pdf", pdf), purpose="assistants")
    store = await client.vector_stores.create(name="manual", file_ids=[file.id])
    done = await client.vector_stores.files.poll(file.id, vector_store_id=store.id, poll_interval_ms=200)
    result["status"] = done.status
    result["completed_s"] = time.perf_counter() - started
    page = await client.vector_stores.search(store.id, query=last_page_sentence(pages), max_num_results=5)
    result["searchable_s"] = time.perf_counter() - started
    result["found_last_page"] = any(last_page_sentence(pages) in r.content[0].text for r in page.data)
    result["chunks"], vectors = vector_counts(database)
    result["load_when_searchable"] = os.getloadavg()[0]
    deadline = started + result["searchable_s"] + vectors_seconds
    watched_from, vectors_from = time.perf_counter(), vectors
    while vectors < result["chunks"] and time.perf_counter() < deadline:
        await asyncio.sleep(1.0)
        _, vectors = vector_counts(database)
    watched = time.perf_counter() - watched_from
    result["vectors_done"] = vectors
    result["vectors_watched_s"] = watched
    result["vector_chunks_per_s"] = (vectors - vectors_from) / watched if watched > 0 else None
    if vectors == result["chunks"]:
        result["all_vectors_s"] = time.perf_counter() - started
    elif result["vector_chunks_per_s"]:
        # At the rate seen, when the last vector would be stored (what `completed` waited for before).
        rest = (result["chunks"] - vectors) / result["vector_chunks_per_s"]
        result["all_vectors_estimated_s"] = time.perf_counter() - started + rest
    result["load_at_end"] = os.getloadavg()[0]
    await client.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--vectors-seconds", type=float, default=120.0)
    args = parser.parse_args()
    pdf = minimal_pdf(page_texts(args.pages))
    with tempfile.TemporaryDirectory(prefix="oa-ingest-") as scratch:
        data_dir = Path(scratch) / "data"
        port = harness.free_port()
        env = harness.server_env(api_keys=API_KEY)
        command = harness.openassistants_command(port, data_dir)
        with harness.running(command, env, port, Path(scratch) / "server.log", "/healthz"):
            url = f"http://{harness.HOST}:{port}"
            database = next(data_dir.glob("*.db"))
            result = asyncio.run(measure(url, pdf, args.pages, database, args.vectors_seconds))
    result["machine"] = harness.machine()
    result["target_searchable_s"] = TARGET_SECONDS
    result["target_met"] = result["found_last_page"] and result["searchable_s"] <= TARGET_SECONDS
    print(json.dumps(result, indent=2))
    print(f"results: {harness.save_results('ingest_searchable', result)}", file=sys.stderr)
    return 0 if result["found_last_page"] else 1


if __name__ == "__main__":
    sys.exit(main())
