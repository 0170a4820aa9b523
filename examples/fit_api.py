"""The sentence-transformers v2 ``model.fit()`` API (InputExample + DataLoader), run on 2 Ray workers.

A v2-era script (the classic ``training_stsbenchmark.py``: STS-B pairs as ``InputExample(texts=[s1, s2],
label=score / 5)`` in a ``DataLoader``, ``CosineSimilarityLoss``, an evaluator every ``evaluation_steps``, the
best model saved to ``output_path``) with only its imports changed and a ``scaling_config`` added. ``fit``
maps all of it onto ``SentenceTransformerTrainer``; new code should use the trainer directly.

    python examples/fit_api.py --smoke-test                             # tiny random model, toy pairs (~1 min)
    python examples/fit_api.py                                          # all-MiniLM-L6-v2 on STS-B train
    python examples/fit_api.py --epochs 4 --workers 4 --data-dir ../shared/data

The best model (by the evaluator's Spearman) is saved to ``OUTPUT_DIR/best``.
"""

from __future__ import annotations

from typing import Any

from _common import base_model, base_parser, init_ray, output_dir, scaling_config, stsb, toy_scored


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns fit's output, the final model's metrics and the best model's path."""
    parser = base_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--train-rows", type=int, default=None, help="first rows of stsb/train.tsv (default all)"
    )
    args = parser.parse_args(argv)

    # --- the v2 imports, changed from `sentence_transformers` to `raystx` ---
    from torch.utils.data import DataLoader

    from raystx import evaluation, losses
    from raystx.data import InputExample

    out = output_dir(args, "fit-api")
    model = base_model(args, out)  # a raystx SentenceTransformer: it has .fit()
    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        train_rows, dev_rows = toy_scored(train_pairs[:32], seed=0), toy_scored(held_out, seed=1)
    else:
        train_rows, dev_rows = (
            stsb(args.data_dir, "train", args.train_rows),
            stsb(args.data_dir, "validation"),
        )

    # --- the v2 script body ---
    train_examples = [
        InputExample(texts=[s1, s2], label=score)
        for s1, s2, score in zip(train_rows["sentence1"], train_rows["sentence2"], train_rows["score"])
    ]
    dev_examples = [
        InputExample(texts=[s1, s2], label=score)
        for s1, s2, score in zip(dev_rows["sentence1"], dev_rows["sentence2"], dev_rows["score"])
    ]
    train_dataloader = DataLoader(train_examples, shuffle=True, batch_size=8 if args.smoke_test else 16)
    train_loss = losses.CosineSimilarityLoss(model)
    evaluator = evaluation.EmbeddingSimilarityEvaluator.from_input_examples(dev_examples, name="sts-dev")

    def on_evaluation(score: float, epoch: float, steps: int) -> None:  # called in the rank-0 worker
        print(f"evaluation at epoch {epoch:.2f}, step {steps}: spearman {score:.4f}")

    init_ray(args.workers)
    best_path = out / "best"
    result = model.fit(
        train_objectives=[(train_dataloader, train_loss)],
        evaluator=evaluator,
        epochs=args.epochs,
        evaluation_steps=2 if args.smoke_test else 100,
        warmup_steps=1 if args.smoke_test else 100,
        optimizer_params={"lr": 1e-3 if args.smoke_test else 2e-5},
        output_path=str(best_path),
        callback=on_evaluation,
        show_progress_bar=False,
        scaling_config=scaling_config(args.workers),  # the one raystx addition
    )
    final = evaluator(model)
    print(f"final model: {evaluator.primary_metric} = {final[evaluator.primary_metric]:.4f}")
    print(f"the best model by {evaluator.primary_metric} is in {best_path}")
    return {"train_output": result, "model": model, "final": final, "model_path": str(best_path)}


if __name__ == "__main__":
    main()
