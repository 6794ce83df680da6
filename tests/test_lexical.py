"""Which query words lexical search matches (retrieval/lexical.py), and FTS5's own tokenizer that
gives each word's index terms on SQLite (storage/search.py)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from openassistants.retrieval.lexical import (
    MAX_WORDS,
    TermSample,
    distinctive_words,
    lexical_query,
    query_words,
)
from openassistants.storage import search, tables
from openassistants.storage.db import Database
from openassistants.storage.search import Fts5Tokenizer


def test_query_words_drop_stop_words_and_operators() -> None:
    assert query_words('How do I "parse" the JSON -- AND json? (NEAR)') == ["parse", "json", "near"]
    assert query_words("what is the") == ["what", "is", "the"]  # nothing else: keep them
    assert query_words("") == []
    assert len(query_words(" ".join(f"w{n}" for n in range(100)))) == MAX_WORDS


def _store(chunks: int, **shares: float) -> TermSample:
    sample = 1000
    return TermSample({t: round(s * sample) for t, s in shares.items()}, sample, chunks)


def test_small_stores_match_every_word() -> None:
    store = _store(2000, self=0.9, parse=0.4, json=0.1)
    assert distinctive_words([store], [["self"], ["pars"], ["json"]]) == [0, 1, 2]


def test_large_stores_match_the_rarest_words_within_the_budget() -> None:
    store = _store(100_000, self=0.6, test=0.3, pars=0.02, json=0.01, rfc=0.001)
    words = [["self"], ["pars"], ["test"], ["rfc"], ["json"]]
    # Expected matches: rfc 100, json 1,000, pars 2,000 fit in 5,000; test (30,000) does not.
    assert distinctive_words([store], words) == [1, 3, 4]
    assert distinctive_words([store], words, budget=1500) == [3, 4]
    # The rarest word is matched even when it alone is over the budget.
    assert distinctive_words([store], [["self"], ["test"]]) == [1]


def test_words_the_index_lacks_or_repeats_are_not_matched() -> None:
    store = _store(100, date=0.1)
    # PostgreSQL's english config has no lexeme for a stop word; "dates" and "date" are one term.
    assert distinctive_words([store], [[], ["date"], ["date"], ["dai", "of", "week"]]) == [1, 3]
    assert distinctive_words([store], [[], []]) == []


def test_a_word_of_several_terms_is_as_rare_as_its_rarest() -> None:
    store = _store(100_000, read=0.2, file=0.3, line=0.01)
    assert distinctive_words([store], [["read", "file"], ["line"]], budget=1000) == [1]
    assert distinctive_words([store], [["line"], ["read", "line"]], budget=2000) == [0, 1]


def test_several_stores_add_up_their_expected_matches() -> None:
    big = _store(90_000, json=0.0, rfc=0.015, self=0.5)
    small = _store(10_000, json=0.3, self=0.5)
    # json 3,000 (all in the small store) + rfc 1,350 fit in 5,000; self (50,000) does not.
    assert distinctive_words([big, small], [["json"], ["rfc"], ["self"]]) == [0, 1]


def test_fts5_tokenizer_gives_the_index_terms() -> None:
    tokenizer = Fts5Tokenizer()
    assert tokenizer.terms(["separators", "read_file", "Ünïcode", "day_of_week"]) == [
        ["separ"],
        ["read", "file"],
        ["unicod"],
        ["dai", "of", "week"],
    ]
    counts = tokenizer.document_counts(["parse the json", "parsing json files", "nothing here"])
    assert counts["pars"] == 2 and counts["json"] == 2 and counts["noth"] == 1
    assert tokenizer.terms(["again"]) == [["again"]]  # nothing left over from earlier calls


def test_lexical_query_weighs_words_by_rarity() -> None:
    store = _store(100_000, self=0.6, pars=0.02, json=0.01)
    words = ["self", "parse", "json", "parsing"]
    plan = lexical_query([store], words, [["self"], ["pars"], ["json"], ["pars"]])
    assert plan.words == ["self", "parse", "json"] and plan.matched == [1, 2] and plan.is_pruned
    assert plan.weights[0] < plan.weights[1] < plan.weights[2]
    assert plan.weights[0] == pytest.approx(math.log(1 + 40_000.5 / 60_000.5))
    assert not lexical_query([store], words, [["self"], ["pars"], ["json"], ["pars"]], budget=1e9).is_pruned


async def test_a_pruned_query_ranks_its_candidates_as_the_whole_query_does(
    backend: str, database_url: str | None, tmp_path: Path
) -> None:
    """Leaving common words out of the match changes which chunks are candidates, never their order."""
    db = Database(database_url or f"sqlite+aiosqlite:///{tmp_path / 'lexical.db'}")
    await db.migrate()
    store = f"vs_{uuid.uuid4().hex}"
    rare = {
        3: "zephyr",
        7: "zephyr quokka zephyr",
        11: "quokka",
        15: "zephyr zephyr zephyr",
        19: "quokka quokka",
    }
    texts = [
        " ".join(["widget"] * (1 + n % 4) + ["gadget"] * (n % 3) + [rare.get(n, "")] + ["filler"] * n)
        for n in range(24)
    ]
    rows = [
        {
            "tenant_id": "t",
            "vector_store_id": store,
            "file_id": "file",
            "chunk_index": n,
            "text": text,
            "tokens": 0,
            "embedding": b"",
        }
        for n, text in enumerate(texts)
    ]
    try:
        async with db.write() as conn:
            await conn.execute(tables.chunks.insert(), rows)
        async with db.read() as conn:
            ids = [
                int(i)
                for i in (
                    await conn.execute(
                        select(tables.chunks.c.id)
                        .where(tables.chunks.c.vector_store_id == store)
                        .order_by(tables.chunks.c.chunk_index)
                    )
                ).scalars()
            ]
            sample = await search.term_sample(conn, ids, len(ids))
            words = query_words("widget zephyr gadget quokka")
            terms = await search.word_terms(conn, words)
            whole = lexical_query([sample], words, terms, budget=1e9)
            pruned = lexical_query([sample], words, terms, budget=8)
            assert [whole.words[i] for i in pruned.matched] == ["zephyr", "quokka"]
            ranked = [c for c, _ in await search.lexical_candidates(conn, [store], whole, 100)]
            candidates = [c for c, _ in await search.lexical_candidates(conn, [store], pruned, 100)]
        assert len(ranked) == 24
        assert candidates == [c for c in ranked if ids.index(c) in rare]
    finally:
        await db.close()
