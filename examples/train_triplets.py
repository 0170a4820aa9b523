"""Train on (anchor, positive, negative) triplets with MultipleNegativesRankingLoss on 2 Ray workers.

The sentence-transformers "training with triplets" recipe with its imports changed and a ``ScalingConfig``
added: NLI triplets (the ``source`` column dropped), in-batch negatives gathered across the workers plus the
hard negative of each row, and a ``TripletEvaluator`` (accuracy: is the anchor closer to its positive than to
its negative?) before and after training.

    python examples/train_triplets.py --smoke-test                      # tiny random model, toy data (~1 min)
    python examples/train_triplets.py                                   # all-MiniLM-L6-v2, 2000 NLI triplets
    python examples/train_triplets.py --train-rows 10000 --epochs 1 --data-dir ../shared/data --workers 4

Prints the evaluator's accuracy before and after, saves the model to ``OUTPUT_DIR/final`` (loads in
``sentence_transformers.SentenceTransformer``).
"""

from __future__ import annotations

from typing import Any

from _common import (
    base_model,
    base_parser,
    init_ray,
    output_dir,
    read_tsv,
    report,
    scaling_config,
    toy_triplets,
)


def load_triplets(args: Any) -> tuple[Any, dict[str, list[str]]]:
    """(train Dataset with anchor/positive/negative, held-out triplets for the evaluator)."""
    import datasets

    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        return datasets.Dataset.from_dict(toy_triplets(train_pairs[:64])), toy_triplets(held_out)
    raw = read_tsv(args.data_dir / "nli" / "nli_triplets.tsv")
    table = datasets.Dataset.from_dict(raw).remove_columns("source")  # the loss takes every other column
    dev = table.select(range(len(table) - args.dev_rows, len(table)))
    train = table.select(range(min(args.train_rows, len(table) - args.dev_rows)))
    return train, {c: dev[c] for c in ("anchor", "positive", "negative")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the metrics before/after and the saved model's path."""
    parser = base_parser(__doc__)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)

    from raystx import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import TripletEvaluator
    from raystx.losses import MultipleNegativesRankingLoss

    out = output_dir(args, "triplets")
    model = base_model(args, out)
    train_dataset, dev = load_triplets(args)
    evaluator = TripletEvaluator(dev["anchor"], dev["positive"], dev["negative"], name="nli-dev")
    before = evaluator(model)
    report("before", before, [evaluator.primary_metric])

    init_ray(args.workers)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 32,
            learning_rate=1e-3 if args.smoke_test else 2e-5,
            warmup_ratio=0.1,
            batch_sampler="no_duplicates",  # a repeated text would be a false in-batch negative
            logging_steps=2 if args.smoke_test else 20,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
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
