"""Where a data-parallel step's time goes: the raystx loop on 2 gloo processes x 1 thread vs 1 process x 2 threads.

    python bench/profile_scaling.py [--data-dir ../shared/data] [--steps 10] [--warmup 2]

No Ray: each process runs ``raystx.train.worker.train_worker`` with a small runtime over a gloo process group
(what Ray Train sets up for its workers), so the profile shows the loop itself. Rank 0 runs under cProfile;
the table lists the share of the main thread's time in forward, backward, gradient sync, the optimizer step and
the rest, for both layouts, plus the steady-state pairs/s of each (same global batch of 32 MiniLM pairs, MNRL).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

# (label, (file suffix, function name)) whose cumulative time is shown as a share of the loop's ``run``
PHASES = [
    ("forward + backward", ("train/loop.py", "forward_backward")),
    ("  of which backward", ("autograd/graph.py", "_engine_run_backward")),
    ("optimizer step (sync, clip, AdamW)", ("train/loop.py", "optimizer_step")),
    ("  of which gradient sync", ("train/optim.py", "sync_gradients")),
    ("  of which AdamW", ("torch/optim/adam.py", "adam")),
    ("waiting for the next batch", ("/queue.py", "get")),
]


def _worker(
    rank: int, world: int, port: int, threads: int, model_dir: str, pairs, steps: int, warmup: int, out
):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    from raystx.data.memory import InMemorySource
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.runtime import LocalRuntime
    from raystx.train.worker import WorkerPayload, train_worker

    class GlooRuntime(LocalRuntime):
        def __init__(self, output_dir):
            super().__init__(output_dir, device="cpu")
            self.rank, self.world_size = rank, world

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 128
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=warmup + steps,
            per_device_train_batch_size=32 // world,
            learning_rate=2e-5,
            logging_steps=warmup,
            save_strategy="no",
            seed=42,
        )
        source = InMemorySource({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
        runtime = GlooRuntime(tmp)
        payload = WorkerPayload(
            model=model,
            losses={"train": MultipleNegativesRankingLoss(model)},
            args=args,
            sources={"train": source},
            label_kinds={"train": "none"},
        )
        profiler = cProfile.Profile()
        profiler.enable()
        train_worker(payload, runtime)
        profiler.disable()
    if rank == 0:
        marks = {r["step"]: r["elapsed_s"] for r in runtime.reports if "elapsed_s" in r}
        rate = steps * 32 / (marks[warmup + steps] - marks[warmup])
        stats = pstats.Stats(profiler).stats

        def cumulative(suffix: str, name: str) -> float:
            return sum(v[3] for k, v in stats.items() if k[0].endswith(suffix) and k[2] == name)

        total = cumulative("train/loop.py", "run")
        shares = {label: cumulative(*key) / total for label, key in PHASES}
        Path(out).write_text(repr({"rate": rate, "total": total, "shares": shares}))
    if world > 1:
        dist.destroy_process_group()


def run(world: int, threads: int, model_dir: str, pairs, steps: int, warmup: int) -> dict:
    import ast
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.txt")
        mp.start_processes(
            _worker,
            args=(world, port, threads, model_dir, pairs, steps, warmup, out),
            nprocs=world,
            start_method="spawn",
        )
        return ast.literal_eval(Path(out).read_text())


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    pairs = read_tsv(
        args.data_dir / "nli" / "nli_entailment_pairs.tsv",
        ["anchor", "positive"],
        limit=32 * (args.steps + args.warmup + 2),
    )
    model_dir = str(minilm_dir(args.model))
    base = run(1, 2, model_dir, pairs, args.steps, args.warmup)
    scaled = run(2, 1, model_dir, pairs, args.steps, args.warmup)
    table = [
        ("1 process x 2 threads (baseline)", f"{base['rate']:.2f} pairs/s", "1.00x", "batch 32"),
        (
            "2 processes x 1 thread (gloo)",
            f"{scaled['rate']:.2f} pairs/s",
            f"{scaled['rate'] / base['rate']:.2f}x",
            "batch 16 each",
        ),
    ]
    for label, _ in PHASES:
        table.append(
            (
                f"share of rank-0 time: {label}",
                f"{scaled['shares'][label]:.0%}",
                "",
                f"1x2: {base['shares'][label]:.0%}",
            )
        )
    print(
        "\nraystx loop without Ray, MiniLM-L6, MNRL, global batch 32, cProfile on rank 0 (cumulative, overlapping)"
    )
    print_table(table)


if __name__ == "__main__":
    main()
