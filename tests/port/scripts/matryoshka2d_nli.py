"""2D Matryoshka training: embeddings that work truncated in size *and* taken from fewer layers.

Matryoshka2dLoss combines MatryoshkaLoss (embedding sizes) with AdaptiveLayerLoss (earlier layers) around
CoSENTLoss on scored pairs.

Usage: python matryoshka2d_nli.py [model_name_or_path]   (a 768-wide model)
Environment: PORT_WIDE_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SequentialEvaluator
from sentence_transformers.losses import CoSENTLoss, Matryoshka2dLoss

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_WIDE_MODEL", "distilroberta-base")
data_dir = os.environ.get("PORT_DATA", "data")
matryoshka_dims = [768, 512, 256, 128, 64]
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/2d_matryoshka_sts-{datetime.now():%Y-%m-%d_%H-%M-%S}"

model = SentenceTransformer(model_name)

train_dataset = load_dataset("json", data_files=f"{data_dir}/sts_train.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")
train_dataset = train_dataset.map(lambda row: {"score": row["score"] / 5.0})

inner_train_loss = CoSENTLoss(model)
train_loss = Matryoshka2dLoss(
    model, inner_train_loss, matryoshka_dims, n_layers_per_step=1, n_dims_per_step=1
)

dev_evaluator = SequentialEvaluator(
    [
        EmbeddingSimilarityEvaluator(
            eval_dataset["sentence1"],
            eval_dataset["sentence2"],
            [score / 5.0 for score in eval_dataset["score"]],
            name=f"sts-dev-{dim}",
            truncate_dim=dim,
        )
        for dim in matryoshka_dims
    ]
)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    save_strategy="no",
    logging_steps=1,
    report_to="none",
    seed=7,
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=train_loss,
    evaluator=dev_evaluator,
)
trainer.train()

dev_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    model.push_to_hub("sts-2d-matryoshka")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
