"""Ranking chunks: dense top-k by cosine similarity, reciprocal rank fusion of rankings, the 0..1 scores
that vector-store search and file_search report (and that ``score_threshold`` is compared with), and
``Ranking``, the API's ``ranking_options`` as search applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: RRF's constant, from its paper (Cormack, Clarke and Büttcher, SIGIR 2009): it damps the weight of the
#: very first ranks, so one ranker's top hit does not outweigh a hit that every ranker places high.
RRF_K = 60
#: In ``normalize_scores``: the summed weight of the rankers that must all rank a chunk first for it to
#: score 1.0. Search fuses one lexical and one dense ranking per query, each of weight 1.
FULL_SCORE_WEIGHT = 2.0


@dataclass(frozen=True)
class Ranking:
    """How a search orders its candidates, from the API's ``ranking_options``.

    ``fuse`` False is ranker ``none``: no fusion, the embedding ranking alone, scored by cosine
    similarity. Otherwise (``auto``, ``default-2024-11-15``, ``default_2024_08_21``) the lexical and
    the embedding rankings are fused by RRF with ``hybrid_search``'s ``text_weight`` and
    ``embedding_weight`` (1 and 1 when not given); a ranking of weight 0 is not computed at all.
    """

    fuse: bool = True
    text_weight: float = 1.0
    embedding_weight: float = 1.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> Ranking:
        """From ``ranking_options`` already validated by the request schemas (or stored from them)."""
        options = options or {}
        weights = options.get("hybrid_search") or {}
        return cls(
            fuse=options.get("ranker") != "none",
            text_weight=float(weights.get("text_weight", 1.0)),
            embedding_weight=float(weights.get("embedding_weight", 1.0)),
        )

    @property
    def uses_text(self) -> bool:
        return self.fuse and self.text_weight > 0

    @property
    def uses_embeddings(self) -> bool:
        return not self.fuse or self.embedding_weight > 0


DEFAULT_RANKING = Ranking()


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float  #: higher is better; its scale depends on what produced the hit


def dense_top_k(
    query: npt.NDArray[np.floating], matrix: npt.NDArray[np.floating], ids: npt.NDArray[np.integer], k: int
) -> list[Hit]:
    """The ``k`` rows of ``matrix`` most similar to ``query``, best first, as hits named by ``ids``.

    ``matrix`` is ``(n, d)`` with L2-normalized rows, ``query`` ``(d,)``, ``ids`` ``(n,)``. Scores are
    cosine similarities (-1..1). Equal scores keep row order.
    """
    count = min(k, len(ids))
    if count <= 0:
        return []
    norm = float(np.linalg.norm(query))
    # einsum's own SIMD loop, not BLAS: a matrix-vector product is bound by memory either way, and
    # OpenBLAS's threads spin after each call (3.4 times the CPU time at 100k x 384, no faster).
    scores = np.einsum("ij,j->i", matrix, query / norm if norm > 0 else query)
    # argpartition finds the k best in O(n); only those k are then sorted.
    best = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(len(scores))
    ordered = best[np.lexsort((best, -scores[best]))]
    return [Hit(int(ids[i]), float(scores[i])) for i in ordered]


def reciprocal_rank_fusion(
    rankings: list[list[Hit]], k: int = RRF_K, weights: list[float] | None = None
) -> list[Hit]:
    """One ranking from many: each chunk scores ``sum(weight / (k + rank))`` over the rankings it is in.

    Ranks count from 1 in each ranking's order (its own scores are not used); a chunk listed twice in
    one ranking counts at its first place. Equal fused scores are ordered by the chunk's best rank,
    then its id. ``weights`` default to 1 each.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("reciprocal_rank_fusion needs one weight per ranking")
    if k < 0 or any(w < 0 for w in weights):
        raise ValueError("reciprocal_rank_fusion needs k >= 0 and weights >= 0")
    fused: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[int] = set()
        for rank, hit in enumerate(ranking, start=1):
            if hit.chunk_id in seen:
                continue
            seen.add(hit.chunk_id)
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (k + rank)
            best_rank[hit.chunk_id] = min(rank, best_rank.get(hit.chunk_id, rank))
    order = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], best_rank[chunk_id], chunk_id))
    return [Hit(chunk_id, fused[chunk_id]) for chunk_id in order]


def normalize_scores(
    hits: list[Hit], *, k: int = RRF_K, full_score_weight: float = FULL_SCORE_WEIGHT
) -> list[Hit]:
    """Fused RRF scores as the API's 0..1 ``score``, in the same order.

    ``score = min(1, fused * (k + 1) / full_score_weight)``: the fraction of the best fused score that
    rankers of total weight ``full_score_weight`` can give (all placing the chunk first). With the
    defaults (one lexical and one dense ranking, k = 60): first in both 1.0; second in both 0.98;
    tenth in both 0.87; first in one only 0.5; tenth in one only 0.44; fiftieth in one only 0.28. So a
    ``score_threshold`` keeps the same meaning whatever else a search finds; the top hit need not score 1.
    Hits fused from more rankings (several queries) can reach the cap at 1.0.
    """
    if full_score_weight <= 0:
        raise ValueError("full_score_weight must be positive")
    scale = (k + 1) / full_score_weight
    return [Hit(hit.chunk_id, min(1.0, max(0.0, hit.score * scale))) for hit in hits]
