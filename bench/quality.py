"""Fine-tuning quality: raystx on 2 Ray workers vs sentence-transformers' trainer, scored on STS-B validation.

    python bench/quality.py [--data-dir ../shared/data] [--train-rows N] [--nli-rows N] [--skip-multi]

Both sides fine-tune all-MiniLM-L6-v2 (max_seq_length 128) with the same data, hyperparameters and seed:

* single dataset: STS-B train (``stsb/train.tsv``, score / 5 as the label) with CoSENTLoss, 1 epoch, batch 16,
  learning rate 2e-5 (linear decay, no warm-up);
* multi-dataset: NLI triplets (``nli/nli_triplets.tsv``, MultipleNegativesRankingLoss) plus STS-B train
  (CoSENTLoss) in one run, one dataset per step (the proportional multi-dataset sampler of both trainers).

sentence-transformers trains in this process (2 torch threads); raystx on a private local Ray instance with
``ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1})`` and a per-device batch of 8 (each loss ranks
the gathered 16-row global batch). The raystx model is saved and loaded back with sentence-transformers, then
every model — the pretrained one (baseline, printed first), each fine-tuned model — is scored by
sentence-transformers' ``EmbeddingSimilarityEvaluator`` on STS-B validation (Spearman correlation of cosine
similarities, in points = x100). Target: raystx >= sentence-transformers - 0.3 points.

``--train-rows`` / ``--nli-rows`` cap the rows of STS-B train / NLI triplets (default: all; a full STS-B epoch is
~360 steps, minutes per run on 2 CPUs) and ``--eval-rows`` the validation pairs; a capped run says so.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 128
BATCH = 16
LR = 2e-5
TOLERANCE_POINTS = 0.3


def load_stsb(data_dir: Path, split: str, limit: int | None) -> dict[str, list]:
    """STS-B ``split`` as columns sentence1, sentence2, score (0-1)."""
    rows = read_tsv(data_dir / "stsb" / f"{split}.tsv", ["sentence1", "sentence2", "score"], limit=limit)
    return {
        "sentence1": [r[0] for r in rows],
        "sentence2": [r[1] for r in rows],
        "score": [float(r[2]) / 5.0 for r in rows],
    }


def load_triplets(data_dir: Path, limit: int | None) -> dict[str, list]:
    """NLI (anchor, positive, negative) triplets as columns (the ``source`` column dropped)."""
    rows = read_tsv(data_dir / "nli" / "nli_triplets.tsv", ["anchor", "positive", "negative"], limit=limit)
    return {c: [r[i] for r in rows] for i, c in enumerate(["anchor", "positive", "negative"])}


def st_evaluator(validation: dict[str, list]):
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        SimilarityFunction,
    )

    return EmbeddingSimilarityEvaluator(
        validation["sentence1"],
        validation["sentence2"],
        validation["score"],
        main_similarity=SimilarityFunction.COSINE,
        name="sts-dev",
        write_csv=False,
    )


def spearman_points(evaluator, model_dir: str) -> float:
    """Spearman (cosine) x 100 of the model in ``model_dir``, loaded and scored by sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    return 100 * float(evaluator(model)[evaluator.primary_metric])


def train_st(model_dir: str, datasets_: dict[str, dict], out_dir: str, threads: int) -> float:
    """Fine-tune with sentence-transformers' trainer; save to ``out_dir``; return the wall time."""
    import datasets
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    losses = {"stsb": CoSENTLoss(model), "nli": MultipleNegativesRankingLoss(model)}
    train = {name: datasets.Dataset.from_dict(cols) for name, cols in datasets_.items()}
    with tempfile.TemporaryDirectory(prefix="st-quality-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=1,
            per_device_train_batch_size=BATCH,
            learning_rate=LR,
            seed=42,
            save_strategy="no",
            report_to="none",
            logging_steps=10_000,
            use_cpu=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train if len(train) > 1 else train["stsb"],
            loss={n: losses[n] for n in train} if len(train) > 1 else losses["stsb"],
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    model.save(out_dir)
    return wall


def train_raystx(model_dir: str, datasets_: dict[str, dict], out_dir: str, workers: int) -> float:
    """Fine-tune with raystx on ``workers`` Ray workers x 1 CPU; save to ``out_dir``; return the wall time."""
    import datasets
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    losses = {"stsb": CoSENTLoss(model), "nli": MultipleNegativesRankingLoss(model)}
    train = {name: datasets.Dataset.from_dict(cols) for name, cols in datasets_.items()}
    with tempfile.TemporaryDirectory(prefix="raystx-quality-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(tmp) / "run"),
            num_train_epochs=1,
            per_device_train_batch_size=BATCH // workers,
            learning_rate=LR,
            seed=42,
            save_strategy="no",
            logging_steps=50,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train if len(train) > 1 else train["stsb"],
            loss={n: losses[n] for n in train} if len(train) > 1 else losses["stsb"],
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    model.save(out_dir)
    return wall


def compare(
    label: str, model_dir: str, datasets_: dict[str, dict], evaluator, args, tmp: Path
) -> list[tuple[str, str, str, str]]:
    """Train both sides on ``datasets_`` and return their table rows (ratio column: difference to ST)."""
    from scaling import start_private_ray

    st_dir, ours_dir = str(tmp / f"st-{label}"), str(tmp / f"raystx-{label}")
    st_wall = train_st(model_dir, datasets_, st_dir, args.threads)
    st_score = spearman_points(evaluator, st_dir)
    print(f"[{label}] sentence-transformers: {st_score:.2f} ({st_wall:.0f} s training)", flush=True)
    start_private_ray(args.workers)
    ours_wall = train_raystx(model_dir, datasets_, ours_dir, args.workers)
    ours_score = spearman_points(evaluator, ours_dir)
    print(f"[{label}] raystx: {ours_score:.2f} ({ours_wall:.0f} s training)", flush=True)
    delta = ours_score - st_score
    verdict = "ok" if delta >= -TOLERANCE_POINTS else "BELOW TARGET"
    return [
        (f"{label}: sentence-transformers trainer", f"{st_score:.2f}", "", f"trained in {st_wall:.0f} s"),
        (
            f"{label}: raystx, {args.workers} Ray workers",
            f"{ours_score:.2f}",
            f"{delta:+.2f} pts",
            f"trained in {ours_wall:.0f} s; target >= -{TOLERANCE_POINTS} pts: {verdict}",
        ),
    ]


def describe(datasets_: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{name} {len(next(iter(cols.values())))} rows" for name, cols in datasets_.items())


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--train-rows", type=int, default=None, help="STS-B train rows (default: all 5,749)")
    parser.add_argument("--nli-rows", type=int, default=None, help="NLI triplet rows (default: all 10,011)")
    parser.add_argument("--eval-rows", type=int, default=None, help="STS-B validation pairs (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of the sentence-transformers run"
    )
    parser.add_argument("--skip-multi", action="store_true", help="only the single-dataset comparison")
    args = parser.parse_args()
    model_dir = minilm_dir(args.model)
    validation = load_stsb(args.data_dir, "validation", args.eval_rows)
    evaluator = st_evaluator(validation)
    stsb = load_stsb(args.data_dir, "train", args.train_rows)

    import torch

    torch.set_num_threads(args.threads)
    baseline = spearman_points(evaluator, model_dir)
    print(f"pretrained baseline: {baseline:.2f}", flush=True)
    rows = [("pretrained all-MiniLM-L6-v2 (no fine-tuning)", f"{baseline:.2f}", "", "reference point")]
    runs = [("STS-B/CoSENT", {"stsb": stsb})]
    if not args.skip_multi:
        runs.append(
            ("NLI/MNRL + STS-B/CoSENT", {"nli": load_triplets(args.data_dir, args.nli_rows), "stsb": stsb})
        )
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        for label, data in runs:
            print(f"[{label}] training on {describe(data)}", flush=True)
            rows += compare(label, model_dir, data, evaluator, args, Path(tmp))
    capped = args.train_rows or args.nli_rows or args.eval_rows
    print(
        f"\nSTS-B validation ({len(validation['score'])} pairs) Spearman cosine x 100, MiniLM-L6 fine-tuned 1 epoch, "
        f"batch {BATCH}, lr {LR}; ratio column: raystx - sentence-transformers"
        + ("\nNOTE: a capped run (--train-rows/--nli-rows/--eval-rows), not the full data" if capped else "")
    )
    print_table(rows)


if __name__ == "__main__":
    main()
