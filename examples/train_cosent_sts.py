"""Train on scored sentence pairs (STS Benchmark) with CoSENTLoss on 2 Ray workers.

Each row is ``(sentence1, sentence2, score)`` with the 0-5 STS score scaled to 0-1; CoSENT pushes every pair
whose score is higher to a higher cosine similarity than every lower-scored pair of the batch (gathered over
the workers). An ``EmbeddingSimilarityEvaluator`` on the STS-B dev split reports Spearman before and after.

    python examples/train_cosent_sts.py --smoke-test                    # tiny random model, toy pairs (~1 min)
    python examples/train_cosent_sts.py                                 # all-MiniLM-L6-v2, full STS-B train
    python examples/train_cosent_sts.py --epochs 4 --workers 4 --data-dir ../shared/data

Saves the model to ``OUTPUT_DIR/final`` (loads in ``sentence_transformers.SentenceTransformer``).
"""

from __future__ import annotations

from typing import Any

from _common import base_model, base_parser, init_ray, output_dir, report, scaling_config, stsb, toy_scored


def load_sts(args: Any) -> tuple[Any, dict[str, list]]:
    """(train Dataset sentence1/sentence2/score in 0-1, dev rows of the same shape)."""
    import datasets

    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        return datasets.Dataset.from_dict(toy_scored(train_pairs[:32], seed=0)), toy_scored(held_out, seed=1)
    train = stsb(args.data_dir, "train", args.train_rows)
    return datasets.Dataset.from_dict(train), stsb(args.data_dir, "validation")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the metrics before/after and the saved model's path."""
    parser = base_parser(__doc__)
    parser.add_argument(
        "--train-rows", type=int, default=None, help="first rows of stsb/train.tsv (default all)"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)

    from raystx import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.losses import CoSENTLoss

    out = output_dir(args, "cosent-sts")
    model = base_model(args, out)
    train_dataset, dev = load_sts(args)
    evaluator = EmbeddingSimilarityEvaluator(dev["sentence1"], dev["sentence2"], dev["score"], name="sts-dev")
    before = evaluator(model)
    report("before", before, [evaluator.primary_metric])

    init_ray(args.workers)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 16,
            learning_rate=1e-3 if args.smoke_test else 2e-5,
            warmup_ratio=0.1,
            logging_steps=2 if args.smoke_test else 50,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=CoSENTLoss(model),
        scaling_config=scaling_config(args.workers),
    )
    result = trainer.train()

    after = evaluator(model)
    report("after ", after, [evaluator.primary_metric])
    final = out / "final"
    model.save_pretrained(str(final))
    print(f"saved the model to {final}")
    return {
        "before": before,
        "after": after,
        "model_path": str(final),
        "train_output": result,
        "model": model,
    }


if __name__ == "__main__":
    main()
