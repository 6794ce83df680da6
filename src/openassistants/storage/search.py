"""The database side of search: lexical candidates from the full-text index (FTS5 BM25 on SQLite,
tsvector ranking on PostgreSQL) and the term statistics that choose which words to match, chunk
embeddings for dense search, the stores' chunk versions, and result rows."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.retrieval.lexical import LexicalQuery, TermSample
from openassistants.statuses import FileStatus
from openassistants.storage import tables

C = tables.chunks
VF = tables.vector_store_files
F = tables.files
V = tables.vector_stores

# FTS5's ``rank`` is bm25() unless configured otherwise (it is not), but ordering by it lets FTS5 rank
# inside its own scan: about half the time of ``ORDER BY bm25(chunks_fts)`` once joined to ``chunks``.
_SQLITE_LEXICAL = text(
    "SELECT c.id, c.file_id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
    "WHERE chunks_fts MATCH :query AND c.vector_store_id IN :stores "
    "ORDER BY rank LIMIT :limit"
).bindparams(bindparam("stores", expanding=True))

_POSTGRES_WORD_TERMS = text(
    "SELECT w.i, l FROM unnest(CAST(:words AS text[])) WITH ORDINALITY AS w(word, i), "
    "unnest(tsvector_to_array(to_tsvector('english', w.word))) AS l"
)

_POSTGRES_TERM_SAMPLE = text(
    "SELECT l, count(*) FROM chunks c, unnest(tsvector_to_array(c.tsv)) AS l WHERE c.id IN :ids GROUP BY l"
).bindparams(bindparam("ids", expanding=True))

_SQLITE_SAMPLE_TEXTS = text("SELECT text FROM chunks WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


class Fts5Tokenizer:
    """FTS5's own tokenizer, configured as ``chunks_fts`` is (``porter unicode61``), run in a private
    in-memory database: the index terms of given texts, exactly as the index stores them."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        # Contentless: 'delete-all' then empties the index itself (a DELETE would leave tombstones).
        self._db.execute(
            "CREATE VIRTUAL TABLE texts USING fts5(text, content='', tokenize='porter unicode61')"
        )
        self._db.execute("CREATE VIRTUAL TABLE text_terms USING fts5vocab(texts, instance)")
        self._db.execute("CREATE VIRTUAL TABLE term_counts USING fts5vocab(texts, row)")
        self._lock = threading.Lock()

    def terms(self, texts: list[str]) -> list[list[str]]:
        """Each text's terms, in order."""
        found: list[list[str]] = [[] for _ in texts]
        with self._lock:
            self._insert(texts)
            for doc, term in self._db.execute("SELECT doc, term FROM text_terms ORDER BY doc, offset"):
                found[doc].append(term)
            self._clear()
        return found

    def document_counts(self, texts: list[str]) -> dict[str, int]:
        """How many of the texts hold each term."""
        with self._lock:
            self._insert(texts)
            counts = {
                str(term): int(doc) for term, doc in self._db.execute("SELECT term, doc FROM term_counts")
            }
            self._clear()
        return counts

    def _insert(self, texts: list[str]) -> None:
        self._db.executemany("INSERT INTO texts(rowid, text) VALUES (?, ?)", enumerate(texts))

    def _clear(self) -> None:
        self._db.execute("INSERT INTO texts(texts) VALUES ('delete-all')")


@functools.cache
def fts5_tokenizer() -> Fts5Tokenizer:
    return Fts5Tokenizer()


async def word_terms(conn: AsyncConnection, words: list[str]) -> list[list[str]]:
    """What the full-text index holds for each word: FTS5's terms, or PostgreSQL's lexemes (none for
    its own stop words)."""
    if not words:
        return []
    if conn.dialect.name == "sqlite":
        return fts5_tokenizer().terms(words)
    found: list[list[str]] = [[] for _ in words]
    for position, lexeme in await conn.execute(_POSTGRES_WORD_TERMS, {"words": words}):
        found[int(position) - 1].append(str(lexeme))
    return found


async def term_sample(conn: AsyncConnection, chunk_ids: list[int], store_chunks: int) -> TermSample:
    """Document counts of index terms over the given chunks of a store of ``store_chunks`` chunks."""
    if not chunk_ids:
        return TermSample({}, 0, store_chunks)
    if conn.dialect.name == "sqlite":
        texts = [str(r[0]) for r in await conn.execute(_SQLITE_SAMPLE_TEXTS, {"ids": chunk_ids})]
        counts = fts5_tokenizer().document_counts(texts)
        return TermSample(counts, len(texts), store_chunks)
    rows = await conn.execute(_POSTGRES_TERM_SAMPLE, {"ids": chunk_ids})
    return TermSample({str(r[0]): int(r[1]) for r in rows}, len(chunk_ids), store_chunks)


def _tsquery(lexemes: list[str]) -> str:
    """Lexemes OR-ed in tsquery's input syntax, each quoted: taken as they are, never parsed again."""
    quoted = ("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)
    return " | ".join(dict.fromkeys(quoted))


async def lexical_candidates(
    conn: AsyncConnection, store_ids: list[str], query: LexicalQuery, limit: int
) -> list[tuple[int, str]]:
    """(chunk id, file id) best first, among the chunks holding any of the query's matched words,
    ranked by all its words."""
    if not query.matched or not store_ids:
        return []
    if conn.dialect.name == "sqlite":
        rows = await conn.execute(
            _SQLITE_LEXICAL, {"query": _fts5_match(query), "stores": store_ids, "limit": limit}
        )
    else:
        rows = await conn.execute(*_postgres_lexical(query, store_ids, limit))
    return [(int(r[0]), str(r[1])) for r in rows]


def _fts5_match(query: LexicalQuery) -> str:
    """The FTS5 expression: any matched word, ranked by all words.

    bm25() adds up every phrase of the expression, whichever branch matched, so ``(R NOT C) OR
    (R AND C)`` (R the matched words, C the others) selects the chunks holding an R and scores each
    by all the words, exactly twice BM25's score over them: the same order. FTS5 reads C's postings
    only at R's chunks, where ``R OR C`` would rank every chunk holding a C.
    """
    phrases = [f'"{word}"' for word in query.words]
    every = " OR ".join(phrases)
    if not query.is_pruned:
        return every
    matched = " OR ".join(phrases[i] for i in query.matched)
    others = " OR ".join(p for i, p in enumerate(phrases) if i not in set(query.matched))
    return f"(({matched}) NOT ({others})) OR (({matched}) AND ({others}))"


def _postgres_lexical(query: LexicalQuery, store_ids: list[str], limit: int) -> tuple[Any, dict[str, Any]]:
    """Candidates hold a matched word's lexemes (GIN index); each word adds its ``ts_rank`` (which
    saturates with the word's count, as BM25 does) times its IDF, which ``ts_rank`` alone lacks. The
    tsqueries are cast once, in ``q``, not once per candidate."""
    parameters: dict[str, Any] = {
        "match": _tsquery([t for i in query.matched for t in query.terms[i]]),
        "stores": store_ids,
        "limit": limit,
    }
    casts, scores = [], []
    for n, (terms, weight) in enumerate(zip(query.terms, query.weights, strict=True)):
        parameters[f"q{n}"], parameters[f"w{n}"] = _tsquery(terms), weight
        casts.append(f"CAST(:q{n} AS tsquery) AS q{n}")
        scores.append(f"CAST(:w{n} AS float8) * ts_rank(c.tsv, q.q{n})")
    sql = text(
        f"SELECT c.id, c.file_id FROM chunks c, (SELECT CAST(:match AS tsquery) AS m, {', '.join(casts)}) q "
        "WHERE c.vector_store_id IN :stores AND c.tsv @@ q.m "
        f"ORDER BY {' + '.join(scores)} DESC LIMIT :limit"
    ).bindparams(bindparam("stores", expanding=True))
    return sql, parameters


async def store_versions(conn: AsyncConnection, store_ids: list[str]) -> dict[str, int]:
    """Each existing store's ``chunks_version``: it changes whenever the store's chunks change."""
    rows = await conn.execute(select(V.c.id, V.c.chunks_version).where(V.c.id.in_(store_ids)))
    return {str(r[0]): int(r[1]) for r in rows}


async def bump_chunks_version(conn: AsyncConnection, store_ids: list[str]) -> None:
    """Marks the stores' chunks as changed, in the transaction that changes them (last, and in id
    order: on PostgreSQL this takes the stores' row locks, so it must not precede other locks)."""
    for store_id in sorted(set(store_ids)):
        await conn.execute(update(V).where(V.c.id == store_id).values(chunks_version=V.c.chunks_version + 1))


async def store_embeddings(
    conn: AsyncConnection, store_id: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(chunk ids, file ids, embedding matrix, which chunks have a vector) of every chunk in the store.

    The matrix has a row for each chunk whose vector has been computed (``has_vector``), in order;
    a chunk whose vector is still pending (an empty ``embedding``, see services/ingestion.py), or of
    another size than most of the store's, has none.
    """
    rows = (
        await conn.execute(
            # In the index's order: sorting by id would first copy the whole matrix into a temporary B-tree.
            select(C.c.id, C.c.file_id, C.c.embedding).where(C.c.vector_store_id == store_id)
        )
    ).all()
    if not rows:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0, object), np.zeros((0, 0), np.float32), np.zeros(0, bool)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    files = np.array([r[1] for r in rows], dtype=object)
    # Vectors of another size were made by another embedder (the setting changed since): unusable
    # with this one's queries, so ranked as pending ones are, until the file is added again.
    sizes = Counter(len(r[2]) for r in rows if r[2])
    size = sizes.most_common(1)[0][0] if sizes else 0
    has_vector = np.fromiter((len(r[2]) == size > 0 for r in rows), dtype=bool, count=len(rows))
    vectors = [r[2] for r in rows if len(r[2]) == size > 0]
    if not vectors:
        return ids, files, np.zeros((0, 0), np.float32), has_vector
    matrix = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(len(vectors), -1)
    return ids, files, matrix, has_vector


async def files_pending_vectors(conn: AsyncConnection) -> list[tuple[str, str]]:
    """(store id, file id) of every file some of whose chunks still wait for their vectors."""
    rows = await conn.execute(
        select(C.c.vector_store_id, C.c.file_id).where(func.length(C.c.embedding) == 0).distinct()
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def chunks_pending_vectors(conn: AsyncConnection, store_id: str, file_id: str) -> list[tuple[int, str]]:
    """(chunk id, text) of the file's chunks that wait for their vectors, in the file's order."""
    rows = await conn.execute(
        select(C.c.id, C.c.text)
        .where(C.c.vector_store_id == store_id, C.c.file_id == file_id, func.length(C.c.embedding) == 0)
        .order_by(C.c.chunk_index)
    )
    return [(int(r[0]), str(r[1])) for r in rows]


_SET_VECTOR = (
    update(C)
    .where(C.c.id == bindparam("chunk_id"), func.length(C.c.embedding) == 0)
    .values(embedding=bindparam("vector"))
)


async def set_vectors(conn: AsyncConnection, vectors: dict[int, bytes]) -> None:
    """Stores computed vectors; a chunk deleted meanwhile is simply not there to update."""
    if vectors:
        await conn.execute(_SET_VECTOR, [{"chunk_id": i, "vector": v} for i, v in vectors.items()])


async def file_attributes(conn: AsyncConnection, store_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(
        select(VF.c.id, VF.c.attributes).where(
            VF.c.vector_store_id.in_(store_ids), VF.c.status == FileStatus.completed.value
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
