"""A document's text as overlapping windows of o200k_base tokens: the ``static`` chunking strategy.

How a chunk ends (``chunk_text``): a window holds at most ``max_chunk_size_tokens`` tokens. If the last
15% of the window (``BOUNDARY_REACH``) holds a natural boundary, the chunk ends at the strongest one, the
latest among equals: a blank line, then a line end or a sentence end (``.``, ``!`` or ``?`` before
whitespace, or CJK full stops), then any whitespace. Otherwise it ends at the window's end, between two
characters. The next chunk starts ``chunk_overlap_tokens`` tokens before that end, moved forward to the
start of a word when one begins within 15% of the overlap; so each step is at most ``max - overlap``
tokens and consecutive chunks share about ``overlap`` tokens. Chunks cover the whole text, in order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise

from openassistants.tokens import count_text, decode, encode

DEFAULT_MAX_CHUNK_SIZE_TOKENS = 800  #: the ``auto`` strategy's size (API reference, chunking_strategy)
DEFAULT_CHUNK_OVERLAP_TOKENS = 400  #: the ``auto`` strategy's overlap
BOUNDARY_REACH = 0.15  #: how far back from a window's end (a share of the window) a boundary is looked for

# How good a place to cut: the strongest boundary within reach wins.
_CUT_ANYWHERE, _CUT_WORD, _CUT_SENTENCE, _CUT_PARAGRAPH = 0, 1, 2, 3
_SENTENCE_ENDS = (".", "!", "?")
_CJK_SENTENCE_ENDS = ("\u3002", "\uff01", "\uff1f")  # ideographic full stop, fullwidth ! and ?


@dataclass(frozen=True)
class Chunk:
    index: int  #: the chunk's position in the document, from 0
    text: str  #: ``text[start:end]`` of the chunked text
    tokens: int  #: o200k_base tokens of ``text`` on its own, at most ``max_chunk_size_tokens``
    start: int  #: offset of the chunk's first character in the chunked text
    end: int  #: offset just after its last character


def chunk_text(
    text: str,
    max_chunk_size_tokens: int = DEFAULT_MAX_CHUNK_SIZE_TOKENS,
    chunk_overlap_tokens: int = DEFAULT_CHUNK_OVERLAP_TOKENS,
) -> list[Chunk]:
    """``text`` as overlapping chunks of at most ``max_chunk_size_tokens`` tokens (rules in the docstring).

    Deterministic. An empty text has no chunks. Lone surrogates in ``text`` count as U+FFFD (offsets are
    unchanged). The API allows 100..4096 tokens and an overlap of at most half; this function takes any
    ``max_chunk_size_tokens >= 1`` and ``0 <= chunk_overlap_tokens < max_chunk_size_tokens`` (else
    ``ValueError``). The one way a chunk can exceed the maximum is a maximum smaller than the few tokens
    (at most 4 seen) over which o200k_base can spread a run of multi-byte characters.
    """
    if max_chunk_size_tokens < 1:
        raise ValueError("max_chunk_size_tokens must be at least 1")
    if not 0 <= chunk_overlap_tokens < max_chunk_size_tokens:
        raise ValueError("chunk_overlap_tokens must be at least 0 and less than max_chunk_size_tokens")
    pieces = _Pieces(encode(text))
    if not pieces.texts:
        return []
    last = len(pieces.token_at) - 1
    end_reach = max(1, int(max_chunk_size_tokens * BOUNDARY_REACH))
    start_reach = int(chunk_overlap_tokens * BOUNDARY_REACH)
    chunks: list[Chunk] = []
    first = 0  # chunk bounds are indexes into the piece boundaries (pieces.token_at / pieces.char_at)
    while True:
        cut = pieces.cut(first, max_chunk_size_tokens, chunk_overlap_tokens, end_reach)
        chunk = pieces.text_between(first, cut)
        tokens = count_text(chunk)
        # A window re-encoded on its own can take more tokens than it had inside the document.
        while tokens > max_chunk_size_tokens and cut > first + 1:
            cut -= 1
            chunk = pieces.text_between(first, cut)
            tokens = count_text(chunk)
        chunks.append(Chunk(len(chunks), chunk, tokens, pieces.char_at[first], pieces.char_at[cut]))
        if cut == last:
            return chunks
        first = max(
            first + 1, pieces.next_start(cut, max_chunk_size_tokens, chunk_overlap_tokens, start_reach)
        )


class _Pieces:
    """A token list cut into its smallest pieces that decode on their own (one token, but for a
    character split between tokens), with each boundary's token and character offsets and strength."""

    def __init__(self, tokens: list[int]) -> None:
        self.texts: list[str] = []
        self.token_at = [0]
        cache: dict[int, str] = {}
        piece_start = 0
        for i, token in enumerate(tokens):
            if i == piece_start:
                piece = cache.get(token)
                if piece is None:
                    piece = cache[token] = decode([token])
            else:
                # From a character boundary, a lossy decode is non-empty only once the whole piece decodes.
                piece = decode(tokens[piece_start : i + 1])
            if piece:
                self.texts.append(piece)
                self.token_at.append(i + 1)
                piece_start = i + 1
        self.char_at = [0]
        for piece in self.texts:
            self.char_at.append(self.char_at[-1] + len(piece))
        self.strength = [_CUT_PARAGRAPH]
        self.strength.extend(_cut_strength(a, b) for a, b in pairwise(self.texts))
        self.strength.append(_CUT_PARAGRAPH)

    def text_between(self, first: int, cut: int) -> str:
        return "".join(self.texts[first:cut])

    def cut(self, first: int, max_tokens: int, overlap: int, reach: int) -> int:
        """Where the chunk starting at boundary ``first`` ends: the best boundary near its window's end."""
        start = self.token_at[first]
        window_end = max(first + 1, bisect_right(self.token_at, start + max_tokens) - 1)
        if window_end == len(self.token_at) - 1:
            return window_end
        # Only cuts past the overlap leave the next chunk starting after this one.
        lowest = bisect_left(self.token_at, max(start + max_tokens - reach, start + overlap + 1))
        best = window_end
        for boundary in range(window_end - 1, lowest - 1, -1):
            if self.strength[boundary] > self.strength[best]:
                best = boundary
        return best

    def next_start(self, cut: int, max_tokens: int, overlap: int, reach: int) -> int:
        """Where the chunk after one ending at ``cut`` starts: ``overlap`` tokens back, at a word if near.

        It starts late enough for its window to reach past ``cut`` (by a piece of several tokens).
        """
        target = max(self.token_at[cut] - overlap, self.token_at[cut + 1] - max_tokens)
        start = bisect_left(self.token_at, target)
        for boundary in range(start, cut):
            if self.token_at[boundary] > target + reach:
                break
            if self.strength[boundary] >= _CUT_WORD:
                return boundary
        return start


def _cut_strength(before: str, after: str) -> int:
    """How natural a cut between two adjacent pieces of text is."""
    if before.endswith(("\n", "\r")):
        return _CUT_PARAGRAPH if before.count("\n") >= 2 else _CUT_SENTENCE
    space = before[-1:].isspace() or after[:1].isspace()
    stripped = before.rstrip()
    if (space and stripped.endswith(_SENTENCE_ENDS)) or stripped.endswith(_CJK_SENTENCE_ENDS):
        return _CUT_SENTENCE
    return _CUT_WORD if space else _CUT_ANYWHERE
