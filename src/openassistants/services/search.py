"""Hybrid search over vector stores: lexical (the database's full-text index) and dense (embeddings,
brute force with numpy) candidates fused by reciprocal rank fusion, then filtered and cut.

Each store's embedding matrix and term statistics are cached in this process and reloaded when the
store's ``chunks_version`` changes (one primary-key read per search), so a file added or removed by
another process is seen at once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.retrieval.lexical import MATCH_BUDGET_CHUNKS, TermSample, lexical_query, query_words
from openassistants.retrieval.ranking import (
    DEFAULT_RANKING,
    RRF_K,
    Hit,
    Ranking,
    dense_top_k,
    normalize_scores,
    reciprocal_rank_fusion,
)
from openassistants.storage import search as queries
from openassistants.storage.db import Database
from openassistants.upstream.embeddings import Embedder, Vectors

#: Candidates taken from each of the lexical and the dense ranking before fusion.
CANDIDATES = 100
#: Stores whose embedding matrices stay cached in this process.
CACHED_STORES = 16
#: Chunks a query's matched words may be expected to match in all (``retrieval/lexical.py``) on
#: PostgreSQL: it reads every candidate's heap row to rank it (measured at 106k chunks: 12 ms at
#: 5,000, 9 ms at 3,000; top 10 equal to matching every word at 99.0% and 98.4% of places), where
#: FTS5 ranks candidates from its posting lists and keeps the default 5,000.
POSTGRES_MATCH_BUDGET_CHUNKS = 3000
#: Query words whose index terms are remembered in this process.
CACHED_WORDS = 50_000
#: Chunks sampled (evenly over the store) for its term statistics when its matrix is loaded.
TERM_SAMPLE_CHUNKS = 2000


@dataclass(frozen=True)
class SearchResult:
    chunk_id: int
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]


@dataclass
class _Store:
    """One store's chunks as search needs them, as of ``version`` (its ``chunks_version``)."""

    version: int
    #: The chunks that have vectors (``dense_*``, one per row of ``matrix``): others are found only by
    #: lexical search until their vectors are stored.
    dense_ids: np.ndarray[Any, Any]
    dense_files: np.ndarray[Any, Any]
    matrix: np.ndarray[Any, Any]
    #: The chunks whose vectors are still pending.
    pending: frozenset[int]
    terms: TermSample


class Searcher:
    def __init__(self, db: Database, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder
        self._cache: OrderedDict[str, _Store] = OrderedDict()
        self._loading: dict[str, asyncio.Lock] = {}
        self._terms: dict[str, list[str]] = {}

    async def search(
        self,
        store_ids: list[str],
        queries_: list[str],
        *,
        max_results: int,
        score_threshold: float = 0.0,
        filters: Any = None,
        versions: dict[str, int] | None = None,
        ranking: Ranking = DEFAULT_RANKING,
    ) -> list[SearchResult]:
        """The best chunks of the stores for the queries; ``versions``, the stores' ``chunks_version``
        when the caller has just read them (else they are read here); ``ranking``, the request's
        ``ranking_options`` (``Ranking.from_options``). Raises ``EmbeddingError``."""
        if not store_ids:
            return []
        # The queries' embeddings are computed while the database ranks the lexical candidates, and
        # the dense top-k (numpy, in a thread) as soon as they arrive; no connection waits for them.
        embedding = (
            asyncio.create_task(self.embedder.embed(queries_, kind="query"))
            if ranking.uses_embeddings
            else None
        )
        dense: asyncio.Task[list[list[Hit]]] | None = None
        lexical_rankings: list[list[Hit]] = []
        dense_rankings: list[list[Hit]] = []
        try:
            async with self.db.read() as conn:
                allowed = None
                if filters is not None:
                    attributes = await queries.file_attributes(conn, store_ids)
                    allowed = {f for f, attrs in attributes.items() if matches(filters, attrs)}
                stores = await self._stores(conn, store_ids, versions)
                if embedding is not None:
                    dense = asyncio.create_task(self._dense_rankings(embedding, stores, allowed))
                if ranking.uses_text:
                    samples = [s.terms for s in stores]
                    budget = MATCH_BUDGET_CHUNKS if self.db.is_sqlite else POSTGRES_MATCH_BUDGET_CHUNKS
                    for query in queries_:
                        words = query_words(query)
                        plan = lexical_query(samples, words, await self._word_terms(conn, words), budget)
                        lexical = await queries.lexical_candidates(conn, store_ids, plan, CANDIDATES)
                        lexical_rankings.append(
                            [Hit(c, 1.0) for c, f in lexical if allowed is None or f in allowed]
                        )
            if dense is not None:
                dense_rankings = await dense
        finally:
            for task in (embedding, dense):
                if task is None:
                    continue
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: the error that matters is already propagating
        pending = frozenset[int]().union(*(s.pending for s in stores))
        ranked = _ranked(lexical_rankings, dense_rankings, pending, ranking, max_results)
        kept = [h for h in ranked if h.score >= score_threshold]
        async with self.db.read() as conn:
            rows = await queries.result_rows(conn, [h.chunk_id for h in kept])
        return [
            SearchResult(
                chunk_id=h.chunk_id,
                file_id=rows[h.chunk_id]["file_id"],
                filename=rows[h.chunk_id]["filename"],
                score=h.score,
                text=rows[h.chunk_id]["text"],
                attributes=rows[h.chunk_id]["attributes"],
            )
            for h in kept
            if h.chunk_id in rows
        ]

    async def _word_terms(self, conn: AsyncConnection, words: list[str]) -> list[list[str]]:
        """``word_terms``, remembered: a word's index terms never change (on PostgreSQL, asking is a
        round trip)."""
        if len(self._terms) + len(words) > CACHED_WORDS:
            self._terms.clear()
        missing = [w for w in words if w not in self._terms]
        if missing:
            self._terms.update(zip(missing, await queries.word_terms(conn, missing), strict=True))
        return [self._terms[w] for w in words]

    async def _dense_rankings(
        self, embedding: asyncio.Task[Vectors], stores: list[_Store], allowed: set[str] | None
    ) -> list[list[Hit]]:
        return [await asyncio.to_thread(self._dense, stores, vector, allowed) for vector in await embedding]

    @staticmethod
    def _dense(stores: list[_Store], vector: np.ndarray[Any, Any], allowed: set[str] | None) -> list[Hit]:
        hits: list[Hit] = []
        for store in stores:
            if not len(store.dense_ids) or store.matrix.shape[1] != len(vector):
                continue  # no vectors yet, or another embedder's
            ids, matrix = store.dense_ids, store.matrix
            if allowed is not None:
                mask = np.isin(store.dense_files, list(allowed))
                ids, matrix = ids[mask], matrix[mask]
                if not len(ids):
                    continue
            hits.extend(dense_top_k(vector, matrix, ids, CANDIDATES))
        hits.sort(key=lambda h: -h.score)
        return hits[:CANDIDATES]

    async def _stores(
        self, conn: AsyncConnection, store_ids: list[str], versions: dict[str, int] | None = None
    ) -> list[_Store]:
        """The stores that exist, from the cache when their chunks have not changed since."""
        if versions is None or not set(store_ids) <= versions.keys():
            versions = await queries.store_versions(conn, store_ids)
        return [await self._store(conn, s, versions[s]) for s in dict.fromkeys(store_ids) if s in versions]

    async def _store(self, conn: AsyncConnection, store_id: str, version: int) -> _Store:
        cached = self._cache.get(store_id)
        if cached is not None and cached.version == version:
            self._cache.move_to_end(store_id)
            return cached
        lock = self._loading.setdefault(store_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(store_id)
            if cached is not None and cached.version == version:
                return cached
            ids, files, matrix, has_vector = await queries.store_embeddings(conn, store_id)
            picked = np.unique(
                np.linspace(0, len(ids) - 1, min(len(ids), TERM_SAMPLE_CHUNKS)).astype(np.int64)
            )
            terms = await queries.term_sample(conn, [int(i) for i in ids[picked]], len(ids))
            pending = frozenset(int(i) for i in ids[~has_vector])
            loaded = _Store(version, ids[has_vector], files[has_vector], matrix, pending, terms)
            self._cache[store_id] = loaded
            self._cache.move_to_end(store_id)
            while len(self._cache) > CACHED_STORES:
                evicted, _ = self._cache.popitem(last=False)
                self._loading.pop(evicted, None)
            return loaded


def _ranked(
    lexical: list[list[Hit]], dense: list[list[Hit]], pending: frozenset[int], ranking: Ranking, limit: int
) -> list[Hit]:
    """The first ``limit`` hits with their 0..1 scores: fused, or (ranker ``none``) by cosine similarity.

    A chunk whose vector is pending cannot be in a dense ranking; fused without one, a file just added
    would lose to every chunk that has one. So its dense rank is taken to be its lexical rank.
    """
    if not ranking.fuse:
        best: dict[int, float] = {}
        for hit in (h for hits in dense for h in hits):
            best[hit.chunk_id] = max(hit.score, best.get(hit.chunk_id, -1.0))
        order = sorted(best, key=lambda chunk_id: (-best[chunk_id], chunk_id))[:limit]
        return [Hit(c, min(1.0, max(0.0, best[c]))) for c in order]
    # A ranking of weight 0 was not computed (``Ranking.uses_text``, ``uses_embeddings``).
    weights = [ranking.text_weight] * len(lexical) + [ranking.embedding_weight] * len(dense)
    fused = reciprocal_rank_fusion([*lexical, *dense], weights=weights)
    if pending and dense:
        scores = {h.chunk_id: h.score for h in fused}
        for hits in lexical:
            seen: set[int] = set()
            for rank, hit in enumerate(hits, start=1):
                if hit.chunk_id in pending and hit.chunk_id not in seen:
                    seen.add(hit.chunk_id)
                    scores[hit.chunk_id] += ranking.embedding_weight / (RRF_K + rank)
        fused = [Hit(c, scores[c]) for c in sorted(scores, key=lambda c: (-scores[c], c))]
    fused = fused[:limit]
    # Normalized scores keep the fused order, so only the first ``limit`` were needed. A score of 1 is
    # first place in both rankings (of one query), whatever the weights.
    full = (ranking.text_weight if lexical else 0.0) + (ranking.embedding_weight if dense else 0.0)
    return normalize_scores(fused, full_score_weight=full or 1.0)


def matches(filter_: Any, attributes: dict[str, Any]) -> bool:
    """Evaluates a ComparisonFilter / CompoundFilter against a file's attributes."""
    kind = filter_.type
    if kind == "and":
        return all(matches(f, attributes) for f in filter_.filters)
    if kind == "or":
        return any(matches(f, attributes) for f in filter_.filters)
    if filter_.key not in attributes:
        return kind in ("ne", "nin")
    actual, expected = attributes[filter_.key], filter_.value
    try:
        if kind == "eq":
            return bool(actual == expected)
        if kind == "ne":
            return bool(actual != expected)
        if kind == "in":
            return actual in expected
        if kind == "nin":
            return actual not in expected
        if kind == "gt":
            return bool(actual > expected)
        if kind == "gte":
            return bool(actual >= expected)
        if kind == "lt":
            return bool(actual < expected)
        if kind == "lte":
            return bool(actual <= expected)
    except TypeError:
        return False
    return False
