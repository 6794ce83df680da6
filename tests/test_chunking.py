"""Chunking (pure; no server): token limits, coverage and overlap, boundaries, determinism; and the
tokenizer's encode/decode that chunking is built on."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openassistants.retrieval.chunking import Chunk, chunk_text
from openassistants.tokens import count_text, decode, encode

PARAGRAPH = (
    "Vector stores hold the chunks of the files added to them. Each chunk is embedded once, when its file "
    "is added, and searched by meaning and by words. A search returns the best chunks, with their files."
)

# Text hypothesis draws: words, spaces, punctuation, newlines, and characters that take several bytes
# (and so may straddle two tokens).
texts = st.lists(
    st.one_of(
        st.sampled_from(["word", " ", ".", ",", "!", "?", "\n", "\t", "123", "A", "  ", "\n\n"]),
        st.sampled_from(["é", "日本", "語", "🎉", "\u00a0", "ẞ", "\U0001d518", "\u3002"]),
        st.characters(codec="utf-8"),
    ),
    max_size=1500,
).map("".join)
sizes = st.integers(min_value=8, max_value=300).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(min_value=0, max_value=size - 1))
)


def assert_well_formed(text: str, chunks: list[Chunk], max_tokens: int, overlap: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    if not text:
        assert chunks == []
        return
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text
        assert chunk.tokens == count_text(chunk.text) <= max_tokens
    for before, after in pairwise(chunks):
        # In order, each starting inside or right at the end of the one before: no gap, no repeat.
        assert before.start < after.start <= before.end < after.end
        if overlap == 0:
            assert after.start == before.end


@settings(max_examples=150, deadline=None)
@given(text=texts, size=sizes)
def test_chunks_fit_cover_and_follow_each_other(text: str, size: tuple[int, int]) -> None:
    max_tokens, overlap = size
    assert_well_formed(text, chunk_text(text, max_tokens, overlap), max_tokens, overlap)


@settings(max_examples=50, deadline=None)
@given(text=texts, size=sizes)
def test_chunking_is_deterministic(text: str, size: tuple[int, int]) -> None:
    assert chunk_text(text, *size) == chunk_text(text, *size)


@settings(max_examples=30, deadline=None)
@given(words=st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta."]), min_size=300, max_size=900))
def test_overlap_is_about_the_requested_tokens(words: list[str]) -> None:
    text = " ".join(words)
    chunks = chunk_text(text, 100, 40)
    for before, after in pairwise(chunks):
        shared = count_text(text[after.start : before.end])
        # 40 tokens back from the cut, then forward to a word start (at most 15% of the overlap).
        assert 40 - 6 - 2 <= shared <= 40 + 2
        # Each step forward is at most max - overlap tokens.
        assert count_text(text[before.start : after.start]) <= 60 + 2


def test_defaults_are_the_auto_strategy() -> None:
    text = " ".join([PARAGRAPH] * 100)
    chunks = chunk_text(text)
    assert len(chunks) > 3
    assert max(c.tokens for c in chunks) <= 800
    assert all(c.tokens >= 800 * 0.85 - 2 for c in chunks[:-1])
    assert_well_formed(text, chunks, 800, 400)


def test_a_chunk_ends_at_the_paragraph_break_near_its_window_end() -> None:
    # A blank line 95% of the way into a 100-token window beats the sentence ends after it.
    first = "word " * 94 + "end.\n\n"
    text = first + "Next paragraph. " * 30
    assert 95 <= count_text(first) <= 97
    chunks = chunk_text(text, 100, 20)
    assert chunks[0].text == first


def test_a_chunk_ends_at_a_sentence_end_rather_than_mid_sentence() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    for chunk in chunk_text(text, 120, 30)[:-1]:
        assert chunk.text.rstrip().endswith(".")


def test_without_a_boundary_near_the_end_a_chunk_fills_its_window() -> None:
    text = "x" * 5000  # no whitespace at all
    chunks = chunk_text(text, 100, 10)
    assert all(c.tokens <= 100 for c in chunks)
    assert sum(c.tokens >= 90 for c in chunks[:-1]) >= len(chunks) - 2
    assert_well_formed(text, chunks, 100, 10)


def test_next_chunk_starts_at_a_word() -> None:
    text = " ".join(f"w{i}" for i in range(2000))
    for chunk in chunk_text(text, 100, 30)[1:]:
        assert chunk.text.startswith(" ") or text[chunk.start - 1] == " "


def test_multibyte_characters_are_never_split() -> None:
    text = "🎉日本語テキスト" * 300
    chunks = chunk_text(text, 50, 10)
    assert_well_formed(text, chunks, 50, 10)
    assert all("\ufffd" not in c.text for c in chunks)


def test_small_and_empty_texts() -> None:
    assert chunk_text("") == []
    assert chunk_text("hello") == [Chunk(0, "hello", 1, 0, 5)]
    assert [c.text for c in chunk_text("   ")] == ["   "]


def test_lone_surrogates_count_as_replacement_characters() -> None:
    chunks = chunk_text("a\ud800b", 10, 0)
    assert [(c.text, c.start, c.end) for c in chunks] == [("a\ufffdb", 0, 3)]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1), (10, 11)])
def test_invalid_sizes_are_rejected(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("some text", max_tokens, overlap)


def test_a_large_document_is_chunked_quickly() -> None:
    text = "\n\n".join([PARAGRAPH] * 6000)  # about 250,000 tokens
    chunks = chunk_text(text)
    assert 600 < len(chunks) < 700
    assert chunks[-1].end == len(text)


# --- tokens.encode / tokens.decode ---


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_decode_inverts_encode(text: str) -> None:
    assert decode(encode(text)) == text
    assert len(encode(text)) == count_text(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100), data=st.data())
def test_decode_of_any_window_is_part_of_the_text(text: str, data: st.DataObject) -> None:
    tokens = encode(text)
    start = data.draw(st.integers(0, len(tokens)))
    end = data.draw(st.integers(start, len(tokens)))
    window = decode(tokens[start:end])  # never raises, even cut inside a character
    assert window in text


def test_decode_leaves_out_a_character_cut_by_the_window() -> None:
    tokens = encode("ok 🎉")
    assert len(tokens) == 3  # "ok", then the emoji's bytes over two tokens
    assert decode(tokens[:2]) == "ok"
    assert decode(tokens[2:]) == ""
    assert decode([]) == ""
