"""Which query words lexical search matches (retrieval/lexical.py), and FTS5's own tokenizer that
gives each word's index terms on SQLite (storage/search.py)."""

from __future__ import annotations

from openassistants.retrieval.lexical import MAX_WORDS, TermSample, distinctive_words, query_words
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
