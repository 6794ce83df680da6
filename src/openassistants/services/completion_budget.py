"""Holding a model turn to the run's ``max_completion_tokens`` as it streams.

The limit goes to the model as ``max_tokens``, but not every OpenAI-compatible server honours it (a
model that never stops would keep its run ``in_progress`` for good). So the turn counts what the
model sends with our tokenizer (tokens.py) and cuts the reply at the limit itself.

Counting the whole reply on every piece would cost O(n²); each piece is counted alone instead, and
the reply is counted whole only once that sum passes the limit (the sum is close to the reply's
count: pieces differ from it only where a token spans their boundary).
"""

from __future__ import annotations

from openassistants.tokens import count_text, truncate_to_tokens


class CompletionBudget:
    """The tokens a turn may still produce; ``exhausted`` once a piece reached the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.exhausted = False
        self._pieces: list[str] = []
        #: The reply's count so far: exact as of the last check, plus each piece's own count since.
        self._estimate = 0

    def fit(self, piece: str) -> str:
        """The part of ``piece`` within the limit: all of it, or its first tokens (then
        ``exhausted``). Nothing once exhausted."""
        if self.exhausted:
            return ""
        self._pieces.append(piece)
        self._estimate += count_text(piece)
        if self._estimate <= self.limit:
            return piece
        produced = "".join(self._pieces)
        self._pieces = [produced]
        self._estimate = count_text(produced)
        if self._estimate <= self.limit:
            return piece
        self.exhausted = True
        kept = truncate_to_tokens(produced, self.limit)
        before = len(produced) - len(piece)
        return kept[before:] if len(kept) > before else ""
