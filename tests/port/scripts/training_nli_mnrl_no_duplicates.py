"""Train on (anchor, positive, negative) NLI triplets with MultipleNegativesRankingLoss.

In-batch negatives: every other positive and negative in the batch is a negative for an anchor, so a batch must
not hold the same text twice -- BatchSamplers.NO_DUPLICATES takes care of that. An STS evaluator runs during
training.

Usage: python training_nli_mnrl_no_duplicates.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import SentenceTransformer, losses
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.similarity_functions import SimilarityFunction
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "distilroberta-base")
data_dir = os.environ.get("PORT_DATA", "data")
train_batch_size = 8
max_seq_length = 75
num_epochs = 1
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/training_nli_mnrl-{datetime.now():%Y-%m-%d_%H-%M-%S}"

model = SentenceTransformer(model_name)
model.max_seq_length = max_seq_length

train_dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")
logging.info(train_dataset)

train_loss = losses.MultipleNegativesRankingLoss(model)

stsb_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=eval_dataset["sentence1"],
    sentences2=eval_dataset["sentence2"],
    scores=[score / 5.0 for score in eval_dataset["score"]],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=num_epochs,
    per_device_train_batch_size=train_batch_size,
    per_device_eval_batch_size=train_batch_size,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,  # MultipleNegativesRankingLoss benefits from no duplicate samples
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_steps=1,
    run_name="nli-mnrl",
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=train_loss,
    evaluator=stsb_evaluator,
)
trainer.train()

stsb_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-nli-v2")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-nli-v2')`."
    )
