"""Ranking metrics for the retrieval benchmark, with binary relevance: recall@k and nDCG@k."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def recall_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the relevant items found in the first ``k`` of ``ranked``."""
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def ndcg_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Normalized discounted cumulative gain of the first ``k`` of ``ranked`` (gain 1 per relevant item).

    1.0 when every relevant item (or ``k`` of them, if more) comes first; an item repeated in
    ``ranked`` gains only at its first place.
    """
    if not relevant:
        raise ValueError("nDCG is undefined without relevant items")
    wanted = set(relevant)
    seen: set[int] = set()
    dcg = 0.0
    for position, item in enumerate(ranked[:k]):
        if item in wanted and item not in seen:
            dcg += 1 / math.log2(position + 2)
        seen.add(item)
    ideal = sum(1 / math.log2(position + 2) for position in range(min(k, len(wanted))))
    return dcg / ideal
