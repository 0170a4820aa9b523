"""Knowledge distillation with MSELoss: a smaller student learns to reproduce a teacher's embeddings.

The teacher (all-MiniLM-L6-v2, 6 layers) embeds the training sentences once, on a Ray Data actor pool of
teacher replicas (``raystx.infer.teacher.teacher_embeddings``, one replica per worker); those vectors are the
``label`` column. The student is the teacher with only some of its layers kept (the sentence-transformers
"layer reduction" recipe: layers 0, 2, 4), so it starts close and becomes about twice as fast. ``MSELoss``
trains it on 2 Ray workers; ``MSEEvaluator`` (negative MSE x100 between teacher and student embeddings of
held-out sentences) and STS-B dev Spearman are reported for teacher and student.

    python examples/distillation.py --smoke-test                        # tiny 2-layer teacher, 1-layer student
    python examples/distillation.py                                     # MiniLM 6 -> 3 layers, 4000 NLI sentences
    python examples/distillation.py --keep-layers 0 3 --train-rows 20000 --data-dir ../shared/data

Saves the student to ``OUTPUT_DIR/final``.
"""

from __future__ import annotations

import copy
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
)


def layer_reduced(teacher: Any, keep: list[int]) -> Any:
    """A copy of ``teacher`` whose transformer keeps only the encoder layers ``keep`` (in that order)."""
    from torch import nn

    student = copy.deepcopy(teacher)
    encoder_model = student[0].auto_model
    layers = encoder_model.encoder.layer
    if max(keep) >= len(layers):
        raise ValueError(f"--keep-layers {keep}: the teacher has only {len(layers)} layers")
    encoder_model.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    encoder_model.config.num_hidden_layers = len(keep)
    return student


def load_sentences(args: Any) -> tuple[list[str], list[str], dict[str, list]]:
    """(train sentences, held-out sentences, STS dev rows)."""
    if args.smoke_test:
        from toy_data import make_pairs

        train_pairs, held_out = make_pairs(seed=0)
        train = list(dict.fromkeys(t for pair in train_pairs[:40] for t in pair))
        dev = list(dict.fromkeys(t for pair in held_out for t in pair))
        return train, dev, toy_scored(held_out, seed=1)
    pairs = read_tsv(args.data_dir / "nli" / "nli_entailment_pairs.tsv")
    sentences = list(dict.fromkeys(pairs["anchor"] + pairs["positive"]))
    dev = sentences[-args.dev_rows :]
    return sentences[: args.train_rows], dev, stsb(args.data_dir, "validation")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the teacher's and the student's metrics and the saved student's path."""
    parser = base_parser(__doc__)
    parser.add_argument(
        "--keep-layers", type=int, nargs="+", default=None, help="teacher layers the student keeps"
    )
    parser.add_argument("--train-rows", type=int, default=4000, help="training sentences")
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args(argv)

    import datasets

    from raystx import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.evaluation import EmbeddingSimilarityEvaluator, MSEEvaluator, SequentialEvaluator
    from raystx.infer.teacher import teacher_embeddings
    from raystx.losses import MSELoss

    out = output_dir(args, "distillation")
    teacher = base_model(args, out)
    keep = args.keep_layers or ([0] if args.smoke_test else [0, 2, 4])
    student = layer_reduced(teacher, keep)
    train_sentences, dev_sentences, sts_dev = load_sentences(args)

    # The teacher runs once, on one Ray actor replica per worker: its embeddings are the training labels.
    init_ray(args.workers)
    train_dataset = teacher_embeddings(
        datasets.Dataset.from_dict({"sentence": train_sentences}),
        teacher,
        "sentence",
        batch_size=64,
        scaling_config=scaling_config(args.workers),
    )
    evaluator = SequentialEvaluator(
        [
            MSEEvaluator(dev_sentences, dev_sentences, teacher_model=teacher, name="distill-dev"),
            EmbeddingSimilarityEvaluator(
                sts_dev["sentence1"], sts_dev["sentence2"], sts_dev["score"], name="sts-dev"
            ),
        ]
    )
    keys = ["distill-dev_negative_mse", "sts-dev_spearman_cosine"]
    teacher_metrics = evaluator(teacher)
    report("teacher        ", teacher_metrics, keys)
    before = evaluator(student)
    report("student before ", before, keys)

    trainer = SentenceTransformerTrainer(
        model=student,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8 if args.smoke_test else 32,
            learning_rate=1e-4,  # larger steps overshoot: the student starts close to the teacher
            warmup_ratio=0.1,
            logging_steps=2 if args.smoke_test else 20,
            save_strategy="no",
            seed=12,
        ),
        train_dataset=train_dataset,
        loss=MSELoss(student),
        scaling_config=scaling_config(args.workers),
    )
    result = trainer.train()

    after = evaluator(student)
    report("student after  ", after, keys)
    final = out / "final"
    student.save_pretrained(str(final))
    print(f"saved the {len(keep)}-layer student to {final}")
    return {
        "teacher_metrics": teacher_metrics,
        "teacher": teacher,
        "model": student,
        "before": before,
        "after": after,
        "keep_layers": keep,
        "model_path": str(final),
        "train_dataset": train_dataset,
        "train_output": result,
    }


if __name__ == "__main__":
    main()
