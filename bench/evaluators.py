"""Benchmark: raystx InformationRetrievalEvaluator vs sentence-transformers' on a Quora retrieval set.

Queries are Quora questions that have a marked duplicate; each query's relevant documents are its duplicates; the
corpus holds those duplicates plus other Quora questions up to ``--corpus-size`` (query texts themselves are kept
out). Both evaluators get the *same* model object (sentence-transformers' all-MiniLM-L6-v2 by default), so the
end-to-end times compare evaluator work on top of identical encoding. A second table replays the recorded
embeddings to time the evaluators' own work (scoring, top-k, metrics) without the encoder.

Commands:
    python bench/evaluators.py                                  # 20k docs, 500 queries, 2 runs per side (long)
    python bench/evaluators.py --corpus-size 1000 --num-queries 50   # quick check
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from common import base_parser, minilm_dir, print_table, read_tsv


def build_quora_ir(data_dir, corpus_size: int, num_queries: int, seed: int = 42):
    """``(queries, corpus, relevant_docs)`` dicts from ``quora/qqp_pairs.tsv`` (ids are Quora question ids)."""
    rows = read_tsv(
        data_dir / "quora" / "qqp_pairs.tsv", ["qid1", "qid2", "question1", "question2", "is_duplicate"]
    )
    text: dict[str, str] = {}
    duplicates: dict[str, set[str]] = defaultdict(set)
    for qid1, qid2, q1, q2, dup in rows:
        text.setdefault(qid1, q1.strip())
        text.setdefault(qid2, q2.strip())
        if dup == "1":
            duplicates[qid1].add(qid2)
            duplicates[qid2].add(qid1)
    rng = random.Random(seed)
    candidates = sorted(q for q in duplicates if text[q])
    rng.shuffle(candidates)
    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for qid in candidates:
        docs = {d for d in duplicates[qid] if d not in queries and text[d]}
        if qid in relevant or not docs or any(qid in r for r in relevant.values()):
            continue
        queries[qid], relevant[qid] = text[qid], docs
        if len(queries) >= num_queries:
            break
    corpus_ids = sorted({d for docs in relevant.values() for d in docs})
    others = [q for q in sorted(text) if q not in queries and text[q] and q not in set(corpus_ids)]
    rng.shuffle(others)
    corpus_ids += others[: max(0, corpus_size - len(corpus_ids))]
    return queries, {cid: text[cid] for cid in corpus_ids}, relevant


class Recorder:
    """Wraps a model: forwards ``encode*``/``similarity``, remembering each text's embedding for replay."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.similarity_fn_name = model.similarity_fn_name
        self.similarity = model.similarity
        self.model_card_data = getattr(model, "model_card_data", None)
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    def _run(self, role: str, sentences, **kwargs):
        fn = getattr(self.model, role)
        out = fn(sentences, **kwargs)
        rows = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        for sentence, row in zip(sentences, rows):
            self.cache[(role, sentence)] = row
        return out

    def encode(self, sentences, **kwargs):
        return self._run("encode", sentences, **kwargs)

    def encode_query(self, sentences, **kwargs):
        return self._run("encode_query", sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        return self._run("encode_document", sentences, **kwargs)


class Replayer:
    """Answers ``encode*`` from a :class:`Recorder` cache (no model work)."""

    def __init__(self, recorder: Recorder) -> None:
        self.cache = recorder.cache
        self.similarity_fn_name = recorder.similarity_fn_name
        self.similarity = recorder.similarity
        self.model_card_data = recorder.model_card_data

    def _get(self, role: str, sentences, convert_to_tensor: bool = False, **_: Any):
        out = torch.stack([self.cache[(role, s)] for s in sentences])
        return out if convert_to_tensor else out.numpy()

    def encode(self, sentences, **kwargs):
        return self._get("encode", sentences, **kwargs)

    def encode_query(self, sentences, **kwargs):
        return self._get("encode_query", sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        return self._get("encode_document", sentences, **kwargs)


def timed(evaluator, model) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, process CPU seconds, metrics) of one evaluator call."""
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = evaluator(model)
    return time.perf_counter() - wall, time.process_time() - cpu, metrics


def max_abs_diff(a: dict[str, float], b: dict[str, float]) -> float:
    if set(a) != set(b):
        return math.inf
    return max(abs(a[k] - b[k]) for k in a)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus-size", type=int, default=20000)
    parser.add_argument("--num-queries", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--corpus-chunk-size", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=2, help="end-to-end runs per side, order alternated")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--replays", type=int, default=3, help="repeats of the encoder-free timing")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator as STIR

    from raystx.evaluation import InformationRetrievalEvaluator as OurIR

    if args.threads:
        torch.set_num_threads(args.threads)
    queries, corpus, relevant = build_quora_ir(args.data_dir, args.corpus_size, args.num_queries)
    print(f"queries {len(queries)}, corpus {len(corpus)}, torch threads {torch.get_num_threads()}")
    model = SentenceTransformer(minilm_dir(args.model), device="cpu")
    model.encode(["warm up"] * 8)
    kwargs = {"batch_size": args.batch_size, "corpus_chunk_size": args.corpus_chunk_size, "write_csv": False}
    ours, theirs = OurIR(queries, corpus, relevant, **kwargs), STIR(queries, corpus, relevant, **kwargs)

    # Both sides go through the same (cheap) recording wrapper; run order alternates (ST, ours, ours, ST, ...)
    # and the best run counts, since other work on a shared machine inflates single timings.
    recorder = Recorder(model)
    runs: dict[str, list[tuple[float, float]]] = {"st": [], "ours": []}
    results: dict[str, dict[str, float]] = {}
    for r in range(args.repeats):
        for side in ("st", "ours") if r % 2 == 0 else ("ours", "st"):
            wall, cpu, results[side] = timed(theirs if side == "st" else ours, recorder)
            runs[side].append((wall, cpu))
            print(f"run {r} {side}: wall {wall:.2f} s, cpu {cpu:.2f} s", flush=True)
    m_st, m_ours = results["st"], results["ours"]
    diff = max_abs_diff(m_ours, m_st)
    st_wall, st_cpu = min(w for w, _ in runs["st"]), min(c for _, c in runs["st"])
    our_wall, our_cpu = min(w for w, _ in runs["ours"]), min(c for _, c in runs["ours"])

    replay = Replayer(recorder)
    st_eval_only = min(timed(theirs, replay)[0] for _ in range(args.replays))
    ours_eval_only = min(timed(ours, replay)[0] for _ in range(args.replays))

    print_table(
        [
            ("sentence-transformers, wall (end to end)", f"{st_wall:.2f} s", "1.00x", "baseline"),
            (
                "raystx, wall (end to end)",
                f"{our_wall:.2f} s",
                f"{our_wall / st_wall:.2f}x",
                "same model object",
            ),
            ("sentence-transformers, CPU (end to end)", f"{st_cpu:.2f} s", "1.00x", "process CPU time"),
            ("raystx, CPU (end to end)", f"{our_cpu:.2f} s", f"{our_cpu / st_cpu:.2f}x", "process CPU time"),
            (
                "sentence-transformers (evaluator only)",
                f"{st_eval_only * 1000:.1f} ms",
                "1.00x",
                "replayed embeddings",
            ),
            (
                "raystx (evaluator only)",
                f"{ours_eval_only * 1000:.1f} ms",
                f"{ours_eval_only / st_eval_only:.2f}x",
                f"min of {args.replays}",
            ),
        ]
    )
    key = ours.primary_metric
    print(
        f"{key}: raystx {m_ours[key]:.6f}  ST {m_st[key]:.6f}; max |diff| over {len(m_st)} metrics: {diff:.2e}"
    )
    if diff > 1e-6:
        raise SystemExit(f"metrics disagree (max abs diff {diff})")


if __name__ == "__main__":
    main()
