"""Training throughput on MiniLM (MNRL, batch 32, max_seq_length 128): raystx vs a plain loop vs sentence-transformers.

    python bench/throughput.py [--data-dir ../shared/data] [--steps 15] [--warmup 3] [--threads 2]

Prints pairs/s of (a) a plain PyTorch loop with the same math on identical batches (the baseline), (b) raystx
with 1 Ray Train worker, (c) sentence-transformers' own trainer, and the ratios to (a). Steady state: the first
``--warmup`` steps of each are excluded. All three run in this one process/run on the same machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

BATCH = 32
MAX_LEN = 128


def load_pairs(data_dir: Path, n: int) -> list[tuple[str, str]]:
    return read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor", "positive"], limit=n)


def plain_loop(model_dir: str, pairs, steps: int, warmup: int, threads: int) -> float:
    """A minimal hand-written loop: tokenize, encode, mean-pool, MNRL (cos * 20, CE), AdamW."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from raystx.data.schedule import EpochPlan

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    plan = EpochPlan({"train": len(pairs)}, BATCH, 1, seed=42, epoch=0)

    def embed(texts):
        f = tok(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        out = model(**f).last_hidden_state
        mask = f["attention_mask"].unsqueeze(-1).float()
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    start = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        _, rows = plan.rows(step, 0)
        a = [pairs[i][0] for i in rows]
        p = [pairs[i][1] for i in rows]
        ea, ep = embed(a), embed(p)
        scores = torch.nn.functional.normalize(ea, dim=-1) @ torch.nn.functional.normalize(ep, dim=-1).T * 20
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(a)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * BATCH / (time.perf_counter() - start)


def raystx_run(model_dir: str, pairs, steps: int, warmup: int, threads: int, workers: int = 1) -> float:
    import datasets
    import ray
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import MultipleNegativesRankingLoss

    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=max(threads * workers, 2), include_dashboard=False, log_to_driver=False
        )
    model = SentenceTransformer(model_dir)
    model.max_seq_length = MAX_LEN
    data = datasets.Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    per_device = BATCH // workers
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(tmp) / "run"),
            max_steps=warmup + steps,
            per_device_train_batch_size=per_device,
            learning_rate=2e-5,
            logging_steps=warmup,
            logging_first_step=False,
            save_strategy="no",
            seed=42,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=MultipleNegativesRankingLoss(model),
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": threads}),
        )
        out = trainer.train()
    marks = {h["step"]: h["elapsed_s"] for h in out.log_history if "elapsed_s" in h}
    return steps * BATCH / (marks[warmup + steps] - marks[warmup])


def st_trainer(model_dir: str, pairs, steps: int, warmup: int, threads: int) -> float:
    import datasets
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    data = datasets.Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=warmup + steps,
            per_device_train_batch_size=BATCH,
            learning_rate=2e-5,
            save_strategy="no",
            report_to="none",
            logging_steps=1000,
            use_cpu=True,
            seed=42,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[Clock()],
        )
        trainer.train()
    return steps * BATCH / (marks[warmup + steps] - marks[warmup])


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-st", action="store_true")
    args = parser.parse_args()
    model_dir = minilm_dir(args.model)
    pairs = load_pairs(args.data_dir, (args.steps + args.warmup + 2) * BATCH)

    plain = plain_loop(model_dir, pairs, args.steps, args.warmup, args.threads)
    ours = raystx_run(model_dir, pairs, args.steps, args.warmup, args.threads)
    rows = [
        (
            "plain PyTorch loop (baseline)",
            f"{plain:.2f} pairs/s",
            "1.00x",
            f"{args.threads} threads, identical batches",
        ),
        ("raystx, 1 Ray worker", f"{ours:.2f} pairs/s", f"{ours / plain:.2f}x", "target >= 0.95x"),
    ]
    if not args.skip_st:
        st = st_trainer(model_dir, pairs, args.steps, args.warmup, args.threads)
        rows.append(("sentence-transformers trainer", f"{st:.2f} pairs/s", f"{st / plain:.2f}x", ""))
        rows.append(("raystx / sentence-transformers", "", f"{ours / st:.2f}x", "target >= 1.25x"))
    print(
        f"\nMiniLM-L6, MNRL, batch {BATCH}, max_seq_length {MAX_LEN}, {args.steps} steps after {args.warmup} warm-up"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
