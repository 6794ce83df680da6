"""The database side of search: lexical candidates from the full-text index (FTS5 BM25 on SQLite,
tsvector ranking on PostgreSQL), chunk embeddings for dense search, and result rows."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.storage import tables

C = tables.chunks
VF = tables.vector_store_files
F = tables.files

_WORD = re.compile(r"\w+", re.UNICODE)

# FTS5's ``rank`` is bm25() unless configured otherwise (it is not), but ordering by it lets FTS5 rank
# inside its own scan: about half the time of ``ORDER BY bm25(chunks_fts)`` once joined to ``chunks``.
_SQLITE_LEXICAL = text(
    "SELECT c.id, c.file_id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
    "WHERE chunks_fts MATCH :query AND c.vector_store_id IN :stores "
    "ORDER BY rank LIMIT :limit"
).bindparams(bindparam("stores", expanding=True))

_POSTGRES_LEXICAL = text(
    "SELECT c.id, c.file_id FROM chunks c, to_tsquery('english', :query) q "
    "WHERE c.vector_store_id IN :stores AND c.tsv @@ q "
    "ORDER BY ts_rank_cd(c.tsv, q) DESC LIMIT :limit"
).bindparams(bindparam("stores", expanding=True))


#: Words too common to tell chunks apart. BM25 already weighs them near zero, but matching any of
#: them makes most chunks candidates, and ranking every candidate is what a large store pays for.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "about",
    ]
)


def query_terms(query: str) -> list[str]:
    """The query's distinctive words, deduplicated, in order; punctuation and operators never reach
    the index. A query of nothing but common words keeps them (better than no lexical search)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
    words = list(seen)
    distinctive = [w for w in words if w not in STOPWORDS]
    return (distinctive or words)[:64]


async def lexical_candidates(
    conn: AsyncConnection, store_ids: list[str], query: str, limit: int
) -> list[tuple[int, str]]:
    """(chunk id, file id) best first, matching any of the query's words."""
    terms = query_terms(query)
    if not terms or not store_ids:
        return []
    if conn.dialect.name == "sqlite":
        match = " OR ".join(f'"{t}"' for t in terms)
        rows = await conn.execute(_SQLITE_LEXICAL, {"query": match, "stores": store_ids, "limit": limit})
    else:
        match = " | ".join(terms)
        rows = await conn.execute(_POSTGRES_LEXICAL, {"query": match, "stores": store_ids, "limit": limit})
    return [(int(r[0]), str(r[1])) for r in rows]


async def store_version(conn: AsyncConnection, store_id: str) -> tuple[int, int]:
    """Changes whenever a store's chunks change (added or removed): (count, highest id)."""
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.max(C.c.id), 0)).where(C.c.vector_store_id == store_id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def store_embeddings(
    conn: AsyncConnection, store_id: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(chunk ids, file ids, embedding matrix) of every chunk in the store."""
    rows = (
        await conn.execute(
            select(C.c.id, C.c.file_id, C.c.embedding).where(C.c.vector_store_id == store_id).order_by(C.c.id)
        )
    ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, object), np.zeros((0, 0), np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    files = np.array([r[1] for r in rows], dtype=object)
    matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return ids, files, matrix


async def file_attributes(conn: AsyncConnection, store_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(
        select(VF.c.id, VF.c.attributes).where(
            VF.c.vector_store_id.in_(store_ids), VF.c.status == "completed"
        )
    )
    return {r[0]: (r[1] or {}) for r in rows}


async def result_rows(conn: AsyncConnection, chunk_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Chunk text with its file's name and (store-level) attributes, by chunk id."""
    if not chunk_ids:
        return {}
    rows = (
        await conn.execute(
            select(C.c.id, C.c.file_id, C.c.text, F.c.filename, VF.c.attributes)
            .join(F, F.c.id == C.c.file_id)
            .join(VF, (VF.c.id == C.c.file_id) & (VF.c.vector_store_id == C.c.vector_store_id))
            .where(C.c.id.in_(chunk_ids))
        )
    ).all()
    return {
        int(r[0]): {"file_id": r[1], "text": r[2], "filename": r[3], "attributes": r[4] or {}} for r in rows
    }
