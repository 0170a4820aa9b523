"""Wall time of one in-loop evaluation: 2 ranks sharing the encoding vs rank 0 alone (the old behaviour).

    python bench/eval.py [--data-dir ../shared/data] [--passages 3000] [--queries 300] [--repeats 2]

An ``InformationRetrievalEvaluator`` over NLI entailment pairs (``nli/nli_entailment_pairs.tsv``): queries are the
first ``--queries`` anchors, the corpus the positives of the first ``--passages`` pairs, each query's own positive
relevant. all-MiniLM-L6-v2 (``max_seq_length`` 128). Two processes joined by a gloo group, one torch thread each
(what two CPU training workers are), evaluate the same model:

* **rank 0 alone**: rank 0 runs the evaluator, rank 1 waits at a barrier (in-loop evaluation before sharding);
* **sharded**: both run ``raystx.evaluation.sharded.run_evaluator``: each encodes half of every list, the rows are
  all-gathered, each computes the metric, rank 0's counts.

Each variant is timed from a barrier to a barrier (the evaluation as the training loop sees it), best of
``--repeats``. Target (issue 16): sharded <= 0.65x rank 0 alone. The metrics of both must be equal (printed).
The wall-time ratio needs 2 idle cores: on a shared machine whose CPU share is fixed, two processes split that
share and the ratio stays near 1. The CPU seconds of the busiest rank (``time.process_time``, taken before the
closing barrier) are printed too: they are the evaluation's critical path whatever else runs on the machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402


def build_evaluator(data_dir: Path, passages: int, queries: int):
    """The IR evaluator over the first ``passages`` NLI pairs (see the module doc)."""
    from raystx.evaluation import InformationRetrievalEvaluator

    rows = read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor", "positive"], limit=passages)
    corpus: dict[str, str] = {}
    by_text: dict[str, str] = {}
    for _anchor, positive in rows:
        if positive not in by_text:
            by_text[positive] = f"d{len(by_text)}"
            corpus[by_text[positive]] = positive
    query_map = {f"q{i}": anchor for i, (anchor, _) in enumerate(rows[:queries])}
    relevant = {f"q{i}": {by_text[positive]} for i, (_, positive) in enumerate(rows[:queries])}
    return InformationRetrievalEvaluator(
        query_map, corpus, relevant, name="nli-ir", batch_size=64, show_progress_bar=False
    )


def _rank(rank: int, world: int, port: int, args: dict, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from raystx.evaluation.sharded import run_evaluator
    from raystx.models import SentenceTransformer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = SentenceTransformer(args["model"], device="cpu")
    model.max_seq_length = 128
    model.eval()
    evaluator = build_evaluator(Path(args["data_dir"]), args["passages"], args["queries"])
    timings: dict[str, list[float]] = {"alone": [], "sharded": []}
    cpu: dict[str, list[float]] = {"alone": [], "sharded": []}
    metrics: dict[str, dict] = {}
    for _ in range(args["repeats"]):
        for variant in ("alone", "sharded"):
            dist.barrier()
            started, cpu_started = time.perf_counter(), time.process_time()
            if variant == "sharded":
                result = run_evaluator(evaluator, model)
            else:
                result = evaluator(model) if rank == 0 else None
            cpu[variant].append(time.process_time() - cpu_started)  # before the barrier (gloo may spin)
            dist.barrier()
            timings[variant].append(time.perf_counter() - started)
            if result is not None:
                metrics[variant] = result
    record = {"timings": timings, "cpu": cpu, "metrics": metrics}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = {
        "model": minilm_dir(args.model),
        "data_dir": str(args.data_dir),
        "passages": args.passages,
        "queries": args.queries,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_rank, args=(2, port, settings, out_dir), nprocs=2, start_method="spawn")
        ranks = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(2)]
    result = ranks[0]
    alone, sharded = min(result["timings"]["alone"]), min(result["timings"]["sharded"])
    # CPU seconds of the busiest rank: the wall time on 2 otherwise idle cores (a shared machine inflates wall time)
    cpu_alone = min(result["cpu"]["alone"])
    cpu_sharded = min(max(r["cpu"]["sharded"][i] for r in ranks) for i in range(args.repeats))
    m_alone, m_sharded = result["metrics"]["alone"], result["metrics"]["sharded"]
    worst = max(abs(m_alone[k] - m_sharded[k]) for k in m_alone)
    key = "nli-ir_cosine_ndcg@10"
    print(f"IR evaluation: {args.queries} queries, corpus of the first {args.passages} NLI positives, MiniLM")
    print_table(
        [
            ("rank 0 alone (2 ranks, 1 idle)", f"{alone:.2f} s", "1.00x", f"{key}={m_alone[key]:.6f}"),
            (
                "sharded over 2 ranks",
                f"{sharded:.2f} s",
                f"{sharded / alone:.2f}x",
                f"{key}={m_sharded[key]:.6f}",
            ),
            ("CPU s of the busiest rank, alone", f"{cpu_alone:.2f} s", "1.00x", "rank 0"),
            (
                "CPU s of the busiest rank, sharded",
                f"{cpu_sharded:.2f} s",
                f"{cpu_sharded / cpu_alone:.2f}x",
                "",
            ),
        ]
    )
    print(f"largest metric difference: {worst:.2e}; target: sharded <= 0.65x rank 0 alone")
    summary = {"alone_s": alone, "sharded_s": sharded, "ratio": sharded / alone, "max_diff": worst}
    summary |= {"cpu_alone_s": cpu_alone, "cpu_sharded_s": cpu_sharded, "cpu_ratio": cpu_sharded / cpu_alone}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
