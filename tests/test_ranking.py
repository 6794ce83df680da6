"""Ranking (pure; no server): dense top-k, reciprocal rank fusion and the API's 0..1 scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openassistants.retrieval.ranking import Hit, dense_top_k, normalize_scores, reciprocal_rank_fusion


def unit_rows(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(rows, dims)).astype(np.float32)
    normalized: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normalized


def test_dense_top_k_finds_the_most_similar_rows_best_first() -> None:
    matrix = unit_rows(1000, 32)
    ids = np.arange(5000, 6000)
    query = matrix[123] + 0.7 * matrix[456]
    hits = dense_top_k(query, matrix, ids, 10)
    assert len(hits) == 10
    assert hits[0].chunk_id == 5123
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = matrix @ (query / np.linalg.norm(query))
    assert [h.chunk_id for h in hits] == list(ids[np.argsort(-expected, kind="stable")[:10]])
    assert scores[0] == pytest.approx(float(expected.max()), abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(0, 60), k=st.integers(0, 80), seed=st.integers(0, 1000))
def test_dense_top_k_equals_a_full_sort(rows: int, k: int, seed: int) -> None:
    matrix = unit_rows(rows, 8, seed)
    query = unit_rows(1, 8, seed + 1)[0]
    ids = np.arange(rows) * 3
    hits = dense_top_k(query, matrix, ids, k)
    full = sorted(range(rows), key=lambda i: (-float(matrix[i] @ query), i))[:k]
    assert [h.chunk_id for h in hits] == [int(ids[i]) for i in full]
    assert all(-1.0 - 1e-5 <= h.score <= 1.0 + 1e-5 for h in hits)


def test_dense_top_k_keeps_row_order_among_equal_scores() -> None:
    matrix = np.ones((6, 4), dtype=np.float32) / 2
    hits = dense_top_k(np.ones(4, dtype=np.float32), matrix, np.array([9, 8, 7, 6, 5, 4]), 4)
    assert [h.chunk_id for h in hits] == [9, 8, 7, 6]


def test_dense_top_k_of_nothing() -> None:
    assert dense_top_k(np.ones(4), np.zeros((0, 4)), np.zeros(0, dtype=np.int64), 5) == []
    assert dense_top_k(np.ones(4), unit_rows(3, 4), np.arange(3), 0) == []


def test_rrf_rewards_agreement() -> None:
    lexical = [Hit(1, 9.0), Hit(2, 8.0), Hit(3, 7.0)]
    dense = [Hit(3, 0.9), Hit(2, 0.8), Hit(4, 0.7)]
    fused = reciprocal_rank_fusion([lexical, dense])
    # 3 (first and third) edges out 2 (second in both); 1 and 4 are each in one ranking only.
    assert [h.chunk_id for h in fused] == [3, 2, 1, 4]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused[1].score == pytest.approx(2 / 62)
    assert fused[2].score == pytest.approx(1 / 61)


def test_rrf_uses_ranks_not_scores_and_weights_rankings() -> None:
    a = [Hit(1, 1000.0), Hit(2, 0.001)]
    b = [Hit(2, 0.5), Hit(1, 0.4)]
    assert [h.chunk_id for h in reciprocal_rank_fusion([a, b], weights=[2.0, 1.0])] == [1, 2]
    assert [h.chunk_id for h in reciprocal_rank_fusion([a, b], weights=[1.0, 2.0])] == [2, 1]
    # Equal scores: the best rank, then the id.
    assert [h.chunk_id for h in reciprocal_rank_fusion([a, b])] == [1, 2]
    assert reciprocal_rank_fusion([a, b], k=0)[0].score == pytest.approx(1 + 1 / 2)


def test_rrf_counts_a_chunk_once_per_ranking() -> None:
    fused = reciprocal_rank_fusion([[Hit(1, 1), Hit(1, 1), Hit(2, 1)]])
    assert fused == [Hit(1, 1 / 61), Hit(2, 1 / 63)]


def test_rrf_of_nothing_and_bad_arguments() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[Hit(1, 1)]], weights=[1.0, 1.0])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[Hit(1, 1)]], k=-1)


def test_normalized_scores_mean_agreement_at_the_top() -> None:
    lexical = [Hit(i, 1.0) for i in range(1, 51)]
    dense = [Hit(i, 1.0) for i in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, *range(100, 140)]]
    scores = {h.chunk_id: h.score for h in normalize_scores(reciprocal_rank_fusion([lexical, dense]))}
    assert scores[1] == pytest.approx(1.0)  # first in both
    assert scores[2] == pytest.approx(61 / 62)
    assert scores[10] == pytest.approx(61 / 70)
    assert scores[100] == pytest.approx(0.5 * 61 / 71)  # eleventh in one only
    assert scores[50] == pytest.approx(0.5 * 61 / 110)  # fiftieth in one only
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_normalized_scores_keep_order_and_cap_at_one() -> None:
    rankings = [[Hit(1, 1), Hit(2, 1)]] * 4  # two queries, each with a lexical and a dense ranking
    fused = reciprocal_rank_fusion(rankings)
    normalized = normalize_scores(fused)
    assert [h.chunk_id for h in normalized] == [1, 2]
    assert [h.score for h in normalized] == [1.0, 1.0]
    assert normalize_scores(fused, full_score_weight=4.0)[1].score == pytest.approx(61 / 62)
    assert normalize_scores([]) == []
    with pytest.raises(ValueError):
        normalize_scores(fused, full_score_weight=0)


@settings(max_examples=100, deadline=None)
@given(
    rankings=st.lists(
        st.lists(st.integers(0, 30), max_size=30, unique=True).map(lambda ids: [Hit(i, 0.0) for i in ids]),
        max_size=4,
    )
)
def test_fusion_then_normalization_stay_in_range_and_order(rankings: list[list[Hit]]) -> None:
    fused = reciprocal_rank_fusion(rankings)
    assert {h.chunk_id for h in fused} == {h.chunk_id for r in rankings for h in r}
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    normalized = normalize_scores(fused, full_score_weight=max(1, len(rankings)))
    assert [h.chunk_id for h in normalized] == [h.chunk_id for h in fused]
    assert all(0 < h.score <= 1 for h in normalized)
