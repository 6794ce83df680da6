"""Which of a query's words the lexical search matches: the most distinctive ones, within a budget.

Full-text ranking (FTS5's BM25, PostgreSQL's ``ts_rank_cd``) costs time for every chunk that matches
any query word, so in a big store a common word makes thousands of chunks candidates while adding
little to the ranking (BM25's IDF of a word in 5% of the chunks is about 2.9, against 7-9 for a rare
word). Words are therefore taken rarest first while the chunks they are expected to match fit in
``MATCH_BUDGET_CHUNKS``; the store's term statistics (``TermSample``) give the estimate. Small stores
never reach the budget, so there every word counts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_WORD = re.compile(r"\w+", re.UNICODE)

#: Most query words matched; the rest of a very long query adds cost, not precision.
MAX_WORDS = 64
#: Chunks the matched words may be expected to match in all (the sum of their document frequencies).
#: FTS5 ranks about 600 matches a millisecond here; 5,000 keeps a search on 100k chunks near 10 ms.
MATCH_BUDGET_CHUNKS = 5000

#: Words too common anywhere to tell chunks apart, dropped before any statistics are looked up.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
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
        "should",
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
    ]
)


def query_words(query: str) -> list[str]:
    """The query's words, lowercased, deduplicated, in order, stop words left out; punctuation and
    operators never reach the index. A query of nothing but stop words keeps them."""
    words = list(dict.fromkeys(_WORD.findall(query.lower())))
    distinctive = [w for w in words if w not in STOPWORDS]
    return (distinctive or words)[:MAX_WORDS]


@dataclass(frozen=True)
class TermSample:
    """How many of ``size`` sampled chunks of a store hold each index term, and the store's size."""

    counts: dict[str, int]
    size: int
    store_chunks: int

    def share(self, term: str) -> float:
        return self.counts.get(term, 0) / self.size if self.size else 0.0


def matching_chunks(samples: list[TermSample], terms: list[str]) -> float:
    """The estimated number of the searched stores' chunks holding all of ``terms`` (one query word's
    index terms; a word that is several terms, like ``read_file``, is as rare as its rarest term)."""
    if not terms:
        return 0.0
    return sum(min(s.share(t) for t in terms) * s.store_chunks for s in samples)


def distinctive_words(
    samples: list[TermSample], word_terms: list[list[str]], budget: float = MATCH_BUDGET_CHUNKS
) -> list[int]:
    """Positions of the words to match, in query order: rarest first while their expected matches fit
    in ``budget`` (the rarest always); words the index does not hold, or holds as an earlier word
    does (``dates`` after ``date``), are left out."""
    known = known_words(word_terms)
    expected = {i: matching_chunks(samples, word_terms[i]) for i in known}
    kept: list[int] = []
    spent = 0.0
    for position in sorted(expected, key=lambda i: (expected[i], i)):
        if kept and spent + expected[position] > budget:
            break
        kept.append(position)
        spent += expected[position]
    return sorted(kept)


def known_words(word_terms: list[list[str]]) -> list[int]:
    """Positions of the words the index holds, each set of terms once (``dates`` after ``date`` is not)."""
    first: dict[tuple[str, ...], int] = {}
    for position, terms in enumerate(word_terms):
        if terms:
            first.setdefault(tuple(terms), position)
    return sorted(first.values())


def idf(samples: list[TermSample], terms: list[str]) -> float:
    """BM25's inverse document frequency of a word in the searched stores (Lucene's, never negative)."""
    total = sum(s.store_chunks for s in samples)
    holding = matching_chunks(samples, terms)
    return math.log(1 + (total - holding + 0.5) / (holding + 0.5))


@dataclass(frozen=True)
class LexicalQuery:
    """A query as the full-text index is asked it: ``words`` (the known ones, in order), their index
    ``terms`` and ``idf`` weights, and which of them (``matched``, positions) a candidate must hold."""

    words: list[str]
    terms: list[list[str]]
    weights: list[float]
    matched: list[int]

    @property
    def is_pruned(self) -> bool:
        return len(self.matched) < len(self.words)


def lexical_query(
    samples: list[TermSample],
    words: list[str],
    word_terms: list[list[str]],
    budget: float = MATCH_BUDGET_CHUNKS,
) -> LexicalQuery:
    known = known_words(word_terms)
    matched = set(distinctive_words(samples, word_terms, budget))
    return LexicalQuery(
        words=[words[i] for i in known],
        terms=[word_terms[i] for i in known],
        weights=[idf(samples, word_terms[i]) for i in known],
        matched=[n for n, i in enumerate(known) if i in matched],
    )
