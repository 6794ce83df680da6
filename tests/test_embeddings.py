"""Embedders (pure; no server of ours): the local model, and the remote client against a small real HTTP
embeddings server written here that answers with deterministic vectors or scripted failures."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

from openassistants.config import Settings
from openassistants.tokens import count_text
from openassistants.upstream.embeddings import (
    LOCAL_DIMENSIONS,
    MAX_BATCH_INPUTS,
    MAX_INPUT_TOKENS,
    EmbeddingError,
    LocalEmbedder,
    RemoteEmbedder,
    create_embedder,
)

STUB_DIMENSIONS = 8


def stub_vector(text: str) -> list[float]:
    """The stub's embedding of ``text``: deterministic, and deliberately not normalized."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) - 100.0 for b in digest[:STUB_DIMENSIONS]]


@dataclass
class Failure:
    status: int
    body: dict[str, Any] = field(default_factory=lambda: {"error": {"message": "scripted failure"}})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  #: seconds to wait before answering (to make the client time out)


class EmbeddingsStub:
    """An OpenAI-compatible POST /v1/embeddings on a loopback port; failures are scripted per request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.failures: list[Failure] = []
        self.malformed = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                if stub.failures:
                    failure = stub.failures.pop(0)
                    time.sleep(failure.delay)
                    if failure.status == 200:
                        self._send(200, stub.reply(body))
                    else:
                        self._send(failure.status, failure.body, failure.headers)
                    return
                self._send(200, stub.reply(body))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out) first

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": stub_vector(t)} for i, t in enumerate(inputs)
        ]
        if self.malformed:
            data = data[:-1]
        # Out of order on purpose: clients must place each vector by its index.
        return {"object": "list", "data": data[::-1], "model": body["model"], "usage": {}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stub() -> Iterator[EmbeddingsStub]:
    server = EmbeddingsStub()
    yield server
    server.close()


@pytest.fixture
async def remote(stub: EmbeddingsStub) -> AsyncIterator[RemoteEmbedder]:
    stub.requests.clear()
    stub.headers.clear()
    stub.failures.clear()
    stub.malformed = False
    embedder = RemoteEmbedder(
        stub.url, "sk-test", "text-embedding-3-small", backoff_seconds=0.01, timeout=httpx.Timeout(1.0)
    )
    yield embedder
    await embedder.aclose()


def expected(texts: list[str]) -> np.ndarray:
    vectors = np.array([stub_vector(t) for t in texts], dtype=np.float32)
    normalized: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalized


# --- remote ---


async def test_remote_embeds_in_order_normalized_and_learns_dimensions(
    stub: EmbeddingsStub, remote: RemoteEmbedder
) -> None:
    assert remote.dimensions == 0
    texts = ["alpha", "beta", "gamma"]
    vectors = await remote.embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, STUB_DIMENSIONS)
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)
    assert remote.dimensions == STUB_DIMENSIONS
    assert stub.requests == [{"model": "text-embedding-3-small", "input": texts, "encoding_format": "float"}]
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"


async def test_remote_ignores_kind(remote: RemoteEmbedder) -> None:
    query = await remote.embed(["same text"], kind="query")
    passage = await remote.embed(["same text"], kind="passage")
    np.testing.assert_array_equal(query, passage)


async def test_remote_batches_at_most_256_inputs(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    texts = [f"text {i}" for i in range(600)]
    vectors = await remote.embed(texts)
    assert [len(r["input"]) for r in stub.requests] == [MAX_BATCH_INPUTS, MAX_BATCH_INPUTS, 88]
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)


async def test_remote_truncates_long_inputs(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    long_text = "word " * 10_000
    await remote.embed([long_text, "short"])
    sent = stub.requests[0]["input"]
    assert count_text(sent[0]) == MAX_INPUT_TOKENS
    assert long_text.startswith(sent[0])
    assert sent[1] == "short"


@pytest.mark.parametrize(
    "failure",
    [
        Failure(500),
        Failure(503),
        Failure(429, headers={"retry-after": "0.01"}),
        Failure(408),
        Failure(200, delay=1.5),  # answered after the client's 1 s timeout
    ],
    ids=["500", "503", "429", "408", "timeout"],
)
async def test_remote_retries_transient_failures(
    stub: EmbeddingsStub, remote: RemoteEmbedder, failure: Failure
) -> None:
    stub.failures = [failure]
    vectors = await remote.embed(["retry me"])
    np.testing.assert_allclose(vectors, expected(["retry me"]), rtol=1e-6)
    assert len(stub.requests) == 2


async def test_remote_gives_up_after_its_retries(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    stub.failures = [Failure(500)] * 4
    with pytest.raises(EmbeddingError, match="500: scripted failure"):
        await remote.embed(["never"])
    assert len(stub.requests) == 4  # the first try and 3 retries


async def test_remote_does_not_retry_a_bad_request(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    stub.failures = [Failure(400, body={"error": {"message": "'$.input' is invalid."}})]
    with pytest.raises(EmbeddingError) as raised:
        await remote.embed(["bad"])
    assert raised.value.message == "The embeddings upstream answered 400: '$.input' is invalid."
    assert len(stub.requests) == 1


async def test_remote_rejects_a_malformed_reply(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    stub.malformed = True  # one vector short
    with pytest.raises(EmbeddingError, match="for 2 inputs"):
        await remote.embed(["a", "b"])


async def test_remote_unreachable_is_an_embedding_error() -> None:
    embedder = RemoteEmbedder("http://127.0.0.1:9/v1", None, "m", max_retries=1, backoff_seconds=0.01)
    with pytest.raises(EmbeddingError, match="unreachable"):
        await embedder.embed(["x"])
    await embedder.aclose()


async def test_remote_embeds_nothing_without_a_request(stub: EmbeddingsStub, remote: RemoteEmbedder) -> None:
    assert (await remote.embed([])).shape == (0, 0)
    assert stub.requests == []


def test_create_embedder_picks_remote_when_configured(stub: EmbeddingsStub) -> None:
    remote = create_embedder(
        Settings(embeddings_base_url=stub.url, embeddings_api_key="k", embeddings_model="m")
    )
    assert isinstance(remote, RemoteEmbedder)
    assert remote.model == "m"
    local = create_embedder(Settings(embeddings_base_url=None))
    assert isinstance(local, LocalEmbedder)
    assert (local.model, local.dimensions) == ("multilingual-e5-small", LOCAL_DIMENSIONS)


# --- local ---


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


async def test_local_vectors_are_normalized_float32_rows(local: LocalEmbedder) -> None:
    vectors = await local.embed(["The cat sat on the mat.", "Quarterly revenue rose.", "日本語の文章", ""])
    assert vectors.shape == (4, LOCAL_DIMENSIONS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert (await local.embed([])).shape == (0, LOCAL_DIMENSIONS)


async def test_local_similar_texts_are_closer_than_unrelated_ones(local: LocalEmbedder) -> None:
    query = (await local.embed(["how much protein should an adult eat each day"], kind="query"))[0]
    passages = await local.embed(
        [
            "Adults need about 0.8 grams of protein per kilogram of body weight daily.",
            "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
            "To reverse a list in Python, call its reverse() method.",
        ],
        kind="passage",
    )
    scores = passages @ query
    assert scores[0] > scores[1] + 0.05
    assert scores[0] > scores[2] + 0.05


async def test_local_query_and_passage_embeddings_differ(local: LocalEmbedder) -> None:
    text = ["reset a forgotten password"]
    query, passage = await local.embed(text, kind="query"), await local.embed(text, kind="passage")
    assert 0.8 < float(query[0] @ passage[0]) < 0.9999


async def test_local_is_deterministic_under_concurrency(local: LocalEmbedder) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(10)]
    alone = await local.embed(texts)
    together = await asyncio.gather(*(local.embed([t]) for t in texts), local.embed(texts))
    np.testing.assert_allclose(np.concatenate(together[:-1]), alone, atol=1e-6)
    np.testing.assert_allclose(together[-1], alone, atol=1e-6)


async def test_local_does_not_block_the_event_loop(local: LocalEmbedder) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await local.embed(["a somewhat longer passage of text " * 10] * 2)
    ticker.cancel()
    assert ticks > 3


async def test_local_queries_do_not_wait_for_a_whole_file(local: LocalEmbedder) -> None:
    passages = [
        f"passage {i}: " + "a fairly long sentence about nothing in particular. " * 8 for i in range(8)
    ]
    ingesting = asyncio.create_task(local.embed(passages))
    await asyncio.sleep(0.05)  # the passages have taken the model
    query = await local.embed(["what is in the passages"], kind="query")
    assert query.shape == (1, LOCAL_DIMENSIONS)
    assert not ingesting.done()  # the query did not wait for all 8 passages (4 turns)
    assert (await ingesting).shape == (8, LOCAL_DIMENSIONS)


async def test_local_queries_do_not_wait_behind_a_turn_of_passages(local: LocalEmbedder) -> None:
    # One turn: two long passages (thousands of tokens), on the passages' engine; the query has its own.
    passages = [
        f"passage {i}: " + "a fairly long sentence about nothing in particular. " * 120 for i in range(2)
    ]
    ingesting = asyncio.create_task(local.embed(passages))
    await asyncio.sleep(0.05)  # the passages have taken their engine
    query = await local.embed(["what is in the passages"], kind="query")
    assert query.shape == (1, LOCAL_DIMENSIONS)
    assert not ingesting.done()
    assert (await ingesting).shape == (2, LOCAL_DIMENSIONS)
