"""Matryoshka embeddings: MatryoshkaLoss(MultipleNegativesRankingLoss) over several dimensions on 2 Ray workers.

The wrapped loss is applied to the first ``d`` dimensions of every embedding for each ``d`` in ``--dims`` and
the losses are summed, so truncated embeddings stay useful. The model is then evaluated at every one of those
dimensions with ``EmbeddingSimilarityEvaluator(truncate_dim=d)``, and reloaded with ``truncate_dim`` to show
that ``encode`` returns the shorter vectors.

    python examples/train_matryoshka.py --smoke-test                    # tiny model, dims 32 16 8 (~1 min)
    python examples/train_matryoshka.py                                 # all-MiniLM-L6-v2, dims 384 256 128 64 32
    python examples/train_matryoshka.py --dims 384 128 32 --train-rows 10000 --data-dir ../shared/data

Trains on NLI (anchor, positive) pairs (toy pairs in the smoke test), evaluates on STS-B dev.
Saves the model to ``OUTPUT_DIR/final``.
"""

from __future__ import annotations

from typing import Any

from _common import base_model, base_parser, init_ray, output_dir, read_tsv, scaling_config, stsb, toy_scored


def load_data(args: Any) -> tuple[Any, dict[str, list]]:
    """(train Dataset anchor/positive, dev rows sentence1/sentence2/score)."""
    import datasets

    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        train = {"anchor": [a for a, _ in train_pairs[:64]], "positive": [p for _, p in train_pairs[:64]]}
        return datasets.Dataset.from_dict(train), toy_scored(held_out, seed=1)
    pairs = read_tsv(args.data_dir / "nli" / "nli_entailment_pairs.tsv", args.train_rows)
    train = datasets.Dataset.from_dict({"anchor": pairs["anchor"], "positive": pairs["positive"]})
    return train, stsb(args.data_dir, "validation")


def evaluate_dims(model: Any, dev: dict[str, list], dims: list[int]) -> dict[int, float]:
    """Spearman (cosine) on the dev rows with embeddings truncated to each dimension."""
    from raystx.evaluation import EmbeddingSimilarityEvaluator

    scores = {}
    for dim in dims:
        evaluator = EmbeddingSimilarityEvaluator(
            dev["sentence1"], dev["sentence2"], dev["score"], name=f"sts-dev-{dim}", truncate_dim=dim
        )
        scores[dim] = evaluator(model)[evaluator.primary_metric]
    return scores


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns Spearman per dimension before/after and the saved model's path."""
    parser = base_parser(__doc__)
    parser.add_argument(
        "--dims", type=int, nargs="+", default=None, help="Matryoshka dimensions, largest first"
    )
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)
    dims = args.dims or ([32, 16, 8] if args.smoke_test else [384, 256, 128, 64, 32])

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    out = output_dir(args, "matryoshka")
    model = base_model(args, out)
    train_dataset, dev = load_data(args)
    before = evaluate_dims(model, dev, dims)

    init_ray(args.workers)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 32,
            learning_rate=1e-3 if args.smoke_test else 2e-5,
            warmup_ratio=0.1,
            logging_steps=2 if args.smoke_test else 20,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=dims),
        scaling_config=scaling_config(args.workers),
    )
    result = trainer.train()

    after = evaluate_dims(model, dev, dims)
    print("dim   spearman before   after")
    for dim in dims:
        print(f"{dim:<5} {before[dim]:.4f}            {after[dim]:.4f}")
    final = out / "final"
    model.save_pretrained(str(final))
    smallest = SentenceTransformer(str(final), truncate_dim=dims[-1], device="cpu")
    shape = smallest.encode(dev["sentence1"][:2]).shape
    print(f"saved the model to {final}; loaded with truncate_dim={dims[-1]} it encodes to shape {shape}")
    return {
        "before": before,
        "after": after,
        "dims": dims,
        "model_path": str(final),
        "train_output": result,
        "model": model,
    }


if __name__ == "__main__":
    main()
