"""Multi-task training: NLI triplets with MultipleNegativesRankingLoss and STS pairs with CoSENTLoss at once.

A dict of datasets with a dict of losses under the same keys; MultiDatasetBatchSamplers.ROUND_ROBIN alternates
batches between the datasets (each batch comes from one dataset only).

Usage: python training_multi_task.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
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
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.losses import CoSENTLoss, MultipleNegativesRankingLoss
from sentence_transformers.training_args import BatchSamplers, MultiDatasetBatchSamplers

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "bert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = (
    f"{os.environ.get('PORT_OUTPUT', 'output')}/training_multi_task-{datetime.now():%Y-%m-%d_%H-%M-%S}"
)

model = SentenceTransformer(model_name)

nli_dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
sts_dataset = load_dataset("json", data_files=f"{data_dir}/sts_train.jsonl", split="train")
sts_dataset = sts_dataset.map(lambda row: {"score": row["score"] / 5.0})
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")

train_dataset = {"all-nli": nli_dataset, "stsb": sts_dataset}
losses = {"all-nli": MultipleNegativesRankingLoss(model), "stsb": CoSENTLoss(model)}

dev_evaluator = EmbeddingSimilarityEvaluator(
    eval_dataset["sentence1"],
    eval_dataset["sentence2"],
    [score / 5.0 for score in eval_dataset["score"]],
    name="sts-dev",
)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    multi_dataset_batch_sampler=MultiDatasetBatchSamplers.ROUND_ROBIN,
    save_strategy="no",
    logging_steps=1,
    run_name="multi-task",
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=losses,
    evaluator=dev_evaluator,
)
trainer.train()

dev_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    model.push_to_hub("multi-task-nli-sts")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
