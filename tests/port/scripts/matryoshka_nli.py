"""Matryoshka training: embeddings that stay useful when truncated to 512, 256, 128 or 64 dimensions.

MatryoshkaLoss applies the inner loss (MultipleNegativesRankingLoss) to the embedding truncated at each size.
The model is evaluated at every size with one EmbeddingSimilarityEvaluator per dimension.

Usage: python matryoshka_nli.py [model_name_or_path]   (a 768-wide model)
Environment: PORT_WIDE_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import SentenceTransformer, losses
from sentence_transformers.evaluation import (
    EmbeddingSimilarityEvaluator,
    SequentialEvaluator,
    SimilarityFunction,
)
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_WIDE_MODEL", "distilroberta-base")
data_dir = os.environ.get("PORT_DATA", "data")
matryoshka_dims = [768, 512, 256, 128, 64]
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/matryoshka_nli-{datetime.now():%Y-%m-%d_%H-%M-%S}"

model = SentenceTransformer(model_name)

train_dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")

inner_train_loss = losses.MultipleNegativesRankingLoss(model)
train_loss = losses.MatryoshkaLoss(model, inner_train_loss, matryoshka_dims=matryoshka_dims)

evaluators = []
for dim in matryoshka_dims:
    evaluators.append(
        EmbeddingSimilarityEvaluator(
            sentences1=eval_dataset["sentence1"],
            sentences2=eval_dataset["sentence2"],
            scores=[score / 5.0 for score in eval_dataset["score"]],
            main_similarity=SimilarityFunction.COSINE,
            name=f"sts-dev-{dim}",
            truncate_dim=dim,
        )
    )
dev_evaluator = SequentialEvaluator(evaluators, main_score_function=lambda scores: scores[0])

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_steps=1,
    run_name="matryoshka-nli",
    report_to="none",
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

model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-nli-matryoshka")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-nli-matryoshka')`."
    )
