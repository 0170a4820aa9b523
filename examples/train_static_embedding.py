"""Train a StaticEmbedding model from scratch: one learned vector per token, averaged per text (no attention).

The model is ``SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=...)])`` with randomly
initialised embeddings over an existing tokenizer (all-MiniLM-L6-v2's ``tokenizer.json``; the tiny test
tokenizer in the smoke test). It encodes orders of magnitude faster than a transformer. Training follows the
sentence-transformers static-embedding recipe: MultipleNegativesRankingLoss on (anchor, positive) pairs with a
high learning rate. STS-B dev Spearman before (random vectors) and after.

    python examples/train_static_embedding.py --smoke-test              # tiny tokenizer, dim 32 (~1 min)
    python examples/train_static_embedding.py                           # MiniLM tokenizer, dim 256, NLI pairs
    python examples/train_static_embedding.py --dim 512 --epochs 3 --data-dir ../shared/data

Saves the model to ``OUTPUT_DIR/final`` (a ``StaticEmbedding`` module: ``model.safetensors`` + ``tokenizer.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import (
    base_parser,
    init_ray,
    minilm_dir,
    output_dir,
    read_tsv,
    report,
    scaling_config,
    stsb,
    tiny_model_dir,
    toy_scored,
)


def static_model(tokenizer_json: Path, dim: int, seed: int = 12) -> Any:
    """A ``SentenceTransformer`` of one randomly initialised ``StaticEmbedding`` over ``tokenizer_json``."""
    import torch
    from tokenizers import Tokenizer

    from raystx import SentenceTransformer
    from raystx.models import StaticEmbedding

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    # one row per token id (the largest id + 1: a vocabulary may have gaps), initialised like nn.EmbeddingBag
    num_ids = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    torch.manual_seed(seed)
    static = StaticEmbedding(tokenizer, embedding_weights=torch.randn(num_ids, dim))
    return SentenceTransformer(modules=[static], device="cpu")


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the metrics before/after and the saved model's path."""
    parser = base_parser(__doc__)
    parser.add_argument(
        "--dim", type=int, default=None, help="embedding width (default 256; 32 in the smoke test)"
    )
    parser.add_argument(
        "--train-rows", type=int, default=None, help="first rows of the NLI pairs (default all)"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)

    from raystx import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.losses import MultipleNegativesRankingLoss

    out = output_dir(args, "static")
    if args.smoke_test:
        tokenizer_json = tiny_model_dir(out / "tiny-bert") / "tokenizer.json"
    else:
        tokenizer_json = minilm_dir() / "tokenizer.json"
    model = static_model(tokenizer_json, args.dim or (32 if args.smoke_test else 256))
    train_dataset, dev = load_data(args)
    evaluator = EmbeddingSimilarityEvaluator(dev["sentence1"], dev["sentence2"], dev["score"], name="sts-dev")
    before = evaluator(model)
    report("before", before, [evaluator.primary_metric])

    init_ray(args.workers)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 128,
            learning_rate=5e-2 if args.smoke_test else 2e-1,  # static embeddings take a high learning rate
            warmup_ratio=0.1,
            logging_steps=2 if args.smoke_test else 20,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(model),
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
