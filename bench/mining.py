"""Hard-negative mining speed: raystx on 1 vs 2 Ray workers vs sentence-transformers' ``mine_hard_negatives``.

    python bench/mining.py [--data-dir ../shared/data] [--queries 500] [--passages 3000] [--batch-size 32]

Data: the first ``--queries`` (anchor, positive) pairs of ``nli/nli_entailment_pairs.tsv`` and, as the extra
corpus, distinct STS-B train sentences up to ``--passages`` passages in all (positives included). Model:
all-MiniLM-L6-v2 (max_seq_length 128), loaded by both libraries. Every side uses one torch thread per model
replica: sentence-transformers runs in this process with ``torch.set_num_threads(1)``; raystx runs
``num_workers`` Ray actors with ``cpus_per_worker=1``. Each side mines with the same options (n-tuple, 3
negatives, exact search). Printed: passages/s encoded (corpus + queries over the encode phase; for raystx that
phase includes starting the actor pool), queries/s mined (whole call), the ratios, and whether raystx's
output rows equal sentence-transformers'. Targets (issue 16): 2 workers >= 1.7x 1 worker; raystx 1 worker
>= 1.0x sentence-transformers.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 128
OPTIONS = {"output_format": "n-tuple", "num_negatives": 3, "verbose": False}


def load_data(data_dir: Path, n_queries: int, n_passages: int) -> tuple[dict[str, list[str]], list[str]]:
    """(pairs as columns, extra corpus) so that positives + corpus hold ``n_passages`` distinct texts."""
    pairs = read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor", "positive"])
    seen_anchor: dict[str, str] = {}
    for anchor, positive in pairs:
        seen_anchor.setdefault(anchor, positive)
        if len(seen_anchor) >= n_queries:
            break
    columns = {"anchor": list(seen_anchor), "positive": list(seen_anchor.values())}
    taken = set(columns["positive"])
    corpus: list[str] = []
    for s1, s2 in read_tsv(data_dir / "stsb" / "train.tsv", ["sentence1", "sentence2"]):
        for s in (s1, s2):
            if s not in taken and len(taken) < n_passages:
                taken.add(s)
                corpus.append(s)
    return columns, corpus


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--passages", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import ray
    import sentence_transformers
    import torch
    from datasets import Dataset

    from raystx.infer import mining
    from raystx.models import SentenceTransformer

    torch.set_num_threads(1)
    model_dir = minilm_dir(args.model)
    columns, corpus = load_data(args.data_dir, args.queries, args.passages)
    dataset = Dataset.from_dict(columns)
    n_texts = len(dict.fromkeys(corpus + columns["positive"])) + len(columns["anchor"])
    st_model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    ours_model = SentenceTransformer(model_dir, device="cpu")
    for model in (st_model, ours_model):
        model.max_seq_length = MAX_LEN

    # sentence-transformers: time its encode phase separately (same calls as inside its mining)
    start = time.perf_counter()
    st_model.encode_document(
        corpus + columns["positive"], batch_size=args.batch_size, show_progress_bar=False
    )
    st_model.encode_query(columns["anchor"], batch_size=args.batch_size, show_progress_bar=False)
    st_encode = time.perf_counter() - start
    start = time.perf_counter()
    reference = sentence_transformers.util.mine_hard_negatives(
        dataset, st_model, corpus=corpus, batch_size=args.batch_size, **OPTIONS
    )
    st_mine = time.perf_counter() - start
    print(f"sentence-transformers: encode {st_encode:.1f}s, mine {st_mine:.1f}s", flush=True)

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    results = {}
    for workers in (1, 2):
        start = time.perf_counter()
        mined = mining.mine_hard_negatives(
            dataset, ours_model, corpus=corpus, batch_size=args.batch_size, num_workers=workers,
            cpus_per_worker=1, **OPTIONS,
        )  # fmt: skip
        total = time.perf_counter() - start
        results[workers] = (dict(mining.LAST_TIMINGS), total, mined.to_dict() == reference.to_dict())
        print(f"raystx {workers} worker(s): {results[workers][0]}, total {total:.1f}s", flush=True)

    n_queries = len(columns["anchor"])
    st_pps, st_qps = n_texts / st_encode, n_queries / st_mine
    rows = [
        ("sentence-transformers encode (baseline)", f"{st_pps:.1f} passages/s", "1.00x", "1 thread"),
        ("sentence-transformers mine (baseline)", f"{st_qps:.1f} queries/s", "1.00x", "1 thread"),
    ]
    for workers, (timings, total, same) in results.items():
        pps, qps = n_texts / timings["encode"], n_queries / total
        base_pps, base_qps = (n_texts / results[1][0]["encode"], n_queries / results[1][1])
        vs_one = (
            "" if workers == 1 else f"; vs 1 worker: {pps / base_pps:.2f}x encode, {qps / base_qps:.2f}x mine"
        )
        rows.append(
            (f"raystx encode, {workers} worker(s)", f"{pps:.1f} passages/s", f"{pps / st_pps:.2f}x",
             f"actor start-up included{vs_one}")
        )  # fmt: skip
        rows.append(
            (f"raystx mine, {workers} worker(s)", f"{qps:.1f} queries/s", f"{qps / st_qps:.2f}x",
             f"search {timings['search']:.1f}s; rows == ST: {same}")
        )  # fmt: skip
    print(
        f"\nMiniLM-L6 hard-negative mining, {n_queries} NLI queries, {n_texts - n_queries} passages, batch "
        f"{args.batch_size}, max_seq_length {MAX_LEN}, 1 thread per replica"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
