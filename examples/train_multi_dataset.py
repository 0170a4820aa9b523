"""Multi-dataset training: NLI triplets with MultipleNegativesRankingLoss and STS-B pairs with CoSENTLoss.

``train_dataset`` and ``loss`` are dicts keyed by the same dataset names. Every global step draws one dataset
(the same on every worker) from a schedule that is a pure function of the seed, the epoch and the dataset
sizes: ``proportional`` (default; each row once per epoch) or ``round_robin`` (alternate, stop when the
smallest dataset runs out). A ``SequentialEvaluator`` reports STS-B Spearman and NLI triplet accuracy.

    python examples/train_multi_dataset.py --smoke-test                 # tiny random model, toy data (~1 min)
    python examples/train_multi_dataset.py                              # all-MiniLM-L6-v2, 2000 rows of each
    python examples/train_multi_dataset.py --sampler round_robin --train-rows 5000 --data-dir ../shared/data

Saves the model to ``OUTPUT_DIR/final``.
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
    stsb,
    toy_scored,
    toy_triplets,
)


def load_data(args: Any) -> tuple[dict[str, Any], dict[str, list], dict[str, list]]:
    """({"nli": triplets, "stsb": scored pairs} Datasets, STS dev rows, NLI dev triplets)."""
    import datasets

    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        train = {
            "nli": datasets.Dataset.from_dict(toy_triplets(train_pairs[:48])),
            "stsb": datasets.Dataset.from_dict(toy_scored(train_pairs[48:64], seed=0)),
        }
        return train, toy_scored(held_out, seed=1), toy_triplets(held_out)
    nli = read_tsv(args.data_dir / "nli" / "nli_triplets.tsv")
    del nli["source"]
    dev_rows = 500
    train = {
        "nli": datasets.Dataset.from_dict({k: v[: args.train_rows] for k, v in nli.items()}),
        "stsb": datasets.Dataset.from_dict(stsb(args.data_dir, "train", args.train_rows)),
    }
    return train, stsb(args.data_dir, "validation"), {k: v[-dev_rows:] for k, v in nli.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the metrics before/after, the per-step losses and the saved model's path."""
    parser = base_parser(__doc__)
    parser.add_argument("--train-rows", type=int, default=2000, help="rows of each dataset")
    parser.add_argument("--sampler", choices=["proportional", "round_robin"], default="proportional")
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)

    from raystx import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import EmbeddingSimilarityEvaluator, SequentialEvaluator, TripletEvaluator
    from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss

    out = output_dir(args, "multi-dataset")
    model = base_model(args, out)
    train, sts_dev, nli_dev = load_data(args)
    evaluator = SequentialEvaluator(
        [
            EmbeddingSimilarityEvaluator(
                sts_dev["sentence1"], sts_dev["sentence2"], sts_dev["score"], name="sts-dev"
            ),
            TripletEvaluator(nli_dev["anchor"], nli_dev["positive"], nli_dev["negative"], name="nli-dev"),
        ]
    )
    keys = ["sts-dev_spearman_cosine", "nli-dev_cosine_accuracy"]
    before = evaluator(model)
    report("before", before, keys)

    init_ray(args.workers)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 16,
            learning_rate=1e-3 if args.smoke_test else 2e-5,
            warmup_ratio=0.1,
            multi_dataset_batch_sampler=args.sampler,
            logging_steps=1 if args.smoke_test else 50,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train,
        loss={"nli": MultipleNegativesRankingLoss(model), "stsb": CoSENTLoss(model)},
        scaling_config=scaling_config(args.workers),
    )
    result = trainer.train()

    after = evaluator(model)
    report("after ", after, keys)
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
