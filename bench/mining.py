"""Hard-negative mining speed: raystx on 1 vs 2 Ray workers vs sentence-transformers' ``mine_hard_negatives``.

    python bench/mining.py [--data-dir ../shared/data] [--queries 1000] [--passages 20000] [--repeat 1]

Data: the first ``--queries`` distinct (anchor, positive) pairs of ``nli/nli_entailment_pairs.tsv`` and, as the
extra corpus, distinct sentences (STS-B train, NLI premises/hypotheses, Quora questions, in that order) up to
``--passages`` passages in all (positives included). Model: all-MiniLM-L6-v2 (max_seq_length 128), loaded by
both libraries. Every side uses one torch thread per model replica: sentence-transformers runs in this process
with ``torch.set_num_threads(1)``; raystx runs ``num_workers`` Ray actors with ``cpus_per_worker=1`` (started
once by ``start_multi_process_pool`` and passed as ``pool=``). Each side mines with the same options (n-tuple, 3
negatives, exact search), after a small warm-up encode.

Printed: the actor start-up (start_multi_process_pool until every replica has loaded the model) and each
replica's model load and torch threads, apart; then the steady state: passages/s encoded (corpus + query texts
over the time spent encoding them; for sentence-transformers, its ``encode_document``/``encode_query`` calls
inside its ``mine_hard_negatives``) and queries/s mined (the whole mining call), the ratios (2 workers / 1
worker, raystx 1 worker / sentence-transformers), whether raystx's rows equal sentence-transformers', and the
load average and each process's CPU share during the call (CPU seconds / wall seconds: below 1.0, the
machine did not give it a whole core, so ratios measure the machine as much as the code). ``--repeat N`` runs the three sides N times, interleaved, and keeps each side's best (the machine
may be shared). The machine's ceiling for any 2-vs-1 ratio (two busy one-thread processes together vs one
alone) is measured before and after each round and printed with the ratios. Targets (issue 16): 2 workers >= 1.7x 1 worker; raystx 1 worker >= 1.0x sentence-transformers.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 128
OPTIONS = {"output_format": "n-tuple", "num_negatives": 3, "output_scores": True, "verbose": False}


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
    sources = [
        (data_dir / "stsb" / "train.tsv", ["sentence1", "sentence2"]),
        (data_dir / "nli" / "nli_pairs.tsv", ["premise", "hypothesis"]),
        (data_dir / "quora" / "qqp_pairs.tsv", ["question1", "question2"]),
    ]
    for path, names in sources:
        for row in read_tsv(path, names):
            for s in row:
                if s and s not in taken and len(taken) < n_passages:
                    taken.add(s)
                    corpus.append(s)
    if len(taken) < n_passages:
        print(f"note: the data holds only {len(taken)} distinct passages", flush=True)
    return columns, corpus


def timed_encoders(model: Any, spent: list[float]) -> None:
    """Make ``model.encode_document``/``encode_query`` add their seconds to ``spent[0]``."""
    for name in ("encode_document", "encode_query"):
        original = getattr(model, name)

        def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(model, name, wrapper)


def compare(ours: Any, reference: Any) -> str:
    """How many rows hold sentence-transformers' texts (same order), and the largest score difference."""
    a, b = ours.to_list(), reference.to_list()
    if len(a) != len(b):
        return f"{len(a)} rows vs ST's {len(b)}"
    texts = [[(k, v) for k, v in row.items() if k != "scores"] for row in (*a, *b)]
    same = sum(x == y for x, y in zip(texts[: len(a)], texts[len(a) :]))
    worst = max((abs(p - q) for x, y in zip(a, b) for p, q in zip(x["scores"], y["scores"])), default=0.0)
    return f"rows == ST: {same}/{len(a)}, scores within {worst:.1e}"


SPIN = "import time\nend = time.perf_counter() + {s}\nn = 0\nwhile time.perf_counter() < end:\n    n += 1\nprint(n)"


def machine_ceiling(seconds: float = 5.0) -> float:
    """What two busy one-thread processes get done together relative to one alone (2.0 on two free cores):
    the most any 2-worker / 1-worker ratio can show on this machine right now."""
    import subprocess

    def spin(n: int) -> int:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SPIN.format(s=seconds)], stdout=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        return sum(int(p.communicate()[0]) for p in procs)

    return spin(2) / spin(1)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1)
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
    n_queries = len(columns["anchor"])
    n_texts = len(dict.fromkeys(corpus + columns["positive"])) + n_queries
    st_model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    ours_model = SentenceTransformer(model_dir, device="cpu")
    for model in (st_model, ours_model):
        model.max_seq_length = MAX_LEN
    warm = corpus[: 4 * args.batch_size]
    st_model.encode(warm, batch_size=args.batch_size, show_progress_bar=False)
    st_spent = [0.0]
    timed_encoders(st_model, st_spent)
    print(f"load average at start: {load()}", flush=True)
    ceiling = [machine_ceiling()]

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    pools, startup = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        pools[workers] = ours_model.start_multi_process_pool(num_workers=workers, cpus_per_worker=1)
        infos = pools[workers].wait_ready()
        startup[workers] = (time.perf_counter() - start, infos)
        ours_model.encode(warm, pool=pools[workers], batch_size=args.batch_size)  # first forward per replica
        print(f"{workers} worker(s) started in {startup[workers][0]:.1f}s: {infos}", flush=True)

    # best (encode seconds, mine seconds) per side, and every round's values
    best: dict[str, tuple[float, float]] = {}
    rounds: dict[str, list[tuple[float, float]]] = {"st": [], 1: [], 2: []}  # type: ignore[dict-item]
    reference = None
    same = {}
    loads = []
    shares: dict[Any, list[list[float]]] = {"st": [], 1: [], 2: []}  # CPU seconds / wall seconds per process
    for _ in range(args.repeat):
        st_spent[0] = 0.0
        start, cpu = time.perf_counter(), time.process_time()
        reference = sentence_transformers.util.mine_hard_negatives(
            dataset, st_model, corpus=corpus, batch_size=args.batch_size, **OPTIONS
        )
        rounds["st"].append((st_spent[0], time.perf_counter() - start))
        shares["st"].append([(time.process_time() - cpu) / rounds["st"][-1][1]])
        print(
            f"sentence-transformers: encode {st_spent[0]:.1f}s, mine {rounds['st'][-1][1]:.1f}s", flush=True
        )
        for workers in (1, 2):
            before = [i["cpu_s"] for i in pools[workers].wait_ready()]
            start = time.perf_counter()
            mined = mining.mine_hard_negatives(
                dataset, ours_model, corpus=corpus, batch_size=args.batch_size, pool=pools[workers], **OPTIONS
            )
            total = time.perf_counter() - start
            after = [i["cpu_s"] for i in pools[workers].wait_ready()]
            shares[workers].append([(y - x) / total for x, y in zip(before, after)])
            t = mining.LAST_TIMINGS
            rounds[workers].append((t["corpus"] + t["queries"], total))
            same[workers] = compare(mined, reference)
            print(
                f"raystx {workers} worker(s): { {k: round(v, 1) for k, v in t.items()} }, call {total:.1f}s"
            )
        loads.append(load())
        ceiling.append(machine_ceiling())
        print(f"load average: {loads[-1]}", flush=True)
    for side, values in rounds.items():
        best[side] = (min(v[0] for v in values), min(v[1] for v in values))
    for pool in pools.values():
        ours_model.stop_multi_process_pool(pool)

    def rates(side: Any) -> tuple[float, float]:
        return n_texts / best[side][0], n_queries / best[side][1]

    def cpu_share(side: Any) -> str:
        """Each process's CPU seconds / wall seconds of the mining call, per round (1.0: a whole core)."""
        return " | ".join(", ".join(f"{x:.2f}" for x in r) for r in shares[side])

    st_pps, st_qps = rates("st")
    one_pps, one_qps = rates(1)
    rows = [
        (f"raystx actor start-up, {w} worker(s)", f"{s:.1f} s",
         "", "model load per replica: " + ", ".join(f"{i['load_s']:.1f} s" for i in infos)
         + "; torch threads: " + ", ".join(str(i["threads"]) for i in infos))
        for w, (s, infos) in startup.items()
    ]  # fmt: skip
    rows += [
        (
            "sentence-transformers encode (baseline)",
            f"{st_pps:.1f} passages/s",
            "1.00x",
            "1 thread, in-process",
        ),
        (
            "sentence-transformers mine (baseline)",
            f"{st_qps:.1f} queries/s",
            "1.00x",
            f"CPU share {cpu_share('st')}",
        ),
    ]
    for workers in (1, 2):
        pps, qps = rates(workers)
        vs_one = (
            "" if workers == 1 else f"; vs 1 worker: {pps / one_pps:.2f}x encode, {qps / one_qps:.2f}x mine"
        )
        rows.append(
            (f"raystx encode, {workers} worker(s)", f"{pps:.1f} passages/s", f"{pps / st_pps:.2f}x",
             f"running pool{vs_one}")
        )  # fmt: skip
        rows.append(
            (f"raystx mine, {workers} worker(s)", f"{qps:.1f} queries/s", f"{qps / st_qps:.2f}x",
             f"CPU share per replica {cpu_share(workers)}; {same[workers]}")
        )  # fmt: skip
    print(
        f"\nMiniLM-L6 hard-negative mining, {n_queries} NLI queries, {n_texts - n_queries} passages, batch "
        f"{args.batch_size}, max_seq_length {MAX_LEN}, 1 thread per replica, best of {args.repeat}; "
        f"load average (1/5/15 min) after each round: {', '.join(loads)} on {os.cpu_count()} CPUs"
    )
    print_table(rows)
    two_pps, two_qps = rates(2)
    print(
        f"\n2 workers / 1 worker: {two_pps / one_pps:.2f}x passages/s, {two_qps / one_qps:.2f}x queries/s "
        f"(target >= 1.7x; this machine's ceiling, 2 busy processes vs 1, measured before and after each "
        f"round: {', '.join(f'{c:.2f}x' for c in ceiling)}); raystx 1 worker / sentence-transformers: {one_pps / st_pps:.2f}x passages/s, "
        f"{one_qps / st_qps:.2f}x queries/s (target >= 1.0x)"
    )


if __name__ == "__main__":
    main()
