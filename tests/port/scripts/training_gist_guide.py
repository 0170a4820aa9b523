"""Train with GISTEmbedLoss: a guide model filters in-batch negatives that are really positives.

Like MultipleNegativesRankingLoss, but a second (frozen) guide model scores every candidate; candidates the guide
rates closer to the anchor than the true positive are not used as negatives.

Usage: python training_gist_guide.py [model_name_or_path] [guide_name_or_path]
Environment: PORT_MODEL, PORT_GUIDE, PORT_DATA, PORT_OUTPUT.
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
from sentence_transformers.evaluation import TripletEvaluator
from sentence_transformers.losses import GISTEmbedLoss
from sentence_transformers.training_args import BatchSamplers

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "microsoft/mpnet-base")
guide_name = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("PORT_GUIDE", "all-MiniLM-L6-v2")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/training_gist-{datetime.now():%Y-%m-%d_%H-%M-%S}"

model = SentenceTransformer(model_name)
guide = SentenceTransformer(guide_name)

dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
dataset = dataset.train_test_split(test_size=8, seed=12)
train_dataset, eval_dataset = dataset["train"], dataset["test"]

loss = GISTEmbedLoss(model, guide, temperature=0.05)

dev_evaluator = TripletEvaluator(
    anchors=eval_dataset["anchor"],
    positives=eval_dataset["positive"],
    negatives=eval_dataset["negative"],
    name="nli-dev",
)
dev_evaluator(model)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    learning_rate=2e-5,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    save_strategy="no",
    logging_steps=1,
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=loss,
    evaluator=dev_evaluator,
)
trainer.train()

dev_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save_pretrained(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    model.push_to_hub("gist-nli")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
