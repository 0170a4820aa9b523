"""Duplicate-question training with OnlineContrastiveLoss, evaluated three ways.

Pairs labelled 1 (duplicate) are pulled together, pairs labelled 0 pushed beyond a cosine-distance margin; the
online variant only uses the hard positives and hard negatives of each batch. A SequentialEvaluator runs binary
classification, paraphrase mining and information retrieval on the dev questions.

Usage: python training_quora_online_contrastive.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import LoggingHandler, SentenceTransformer, losses
from sentence_transformers.evaluation import (
    BinaryClassificationEvaluator,
    InformationRetrievalEvaluator,
    ParaphraseMiningEvaluator,
    SequentialEvaluator,
)
from sentence_transformers.losses.ContrastiveLoss import SiameseDistanceMetric
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import SentenceTransformerTrainingArguments

logging.basicConfig(
    format="%(asctime)s - %(message)s",
    datefmt="%Y-%m-%d %H:%M:%S",
    level=logging.INFO,
    handlers=[LoggingHandler()],
)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "stsb-distilbert-base")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/training_quora-{datetime.now():%Y-%m-%d_%H-%M-%S}"
margin = 0.5  # negative pairs should have a cosine distance of at least 0.5

model = SentenceTransformer(model_name)

train_dataset = load_dataset("json", data_files=f"{data_dir}/quora_pairs.jsonl", split="train")
train_dataset = train_dataset.rename_column("is_duplicate", "label")
dev_dataset = load_dataset("json", data_files=f"{data_dir}/quora_dev.jsonl", split="train")

train_loss = losses.OnlineContrastiveLoss(
    model=model, distance_metric=SiameseDistanceMetric.COSINE_DISTANCE, margin=margin
)

# 1) Binary classification: are the two questions duplicates?
binary_acc_evaluator = BinaryClassificationEvaluator(
    sentences1=dev_dataset["question1"],
    sentences2=dev_dataset["question2"],
    labels=dev_dataset["is_duplicate"],
    name="quora-duplicates-dev",
)

# 2) Paraphrase mining: find the duplicate pairs among all dev questions
question_ids: dict[str, str] = {}
for question in list(dev_dataset["question1"]) + list(dev_dataset["question2"]):
    question_ids.setdefault(question, f"q{len(question_ids)}")
sentences_map = {qid: question for question, qid in question_ids.items()}
duplicates_list = [
    (question_ids[row["question1"]], question_ids[row["question2"]])
    for row in dev_dataset
    if row["is_duplicate"]
]
paraphrase_mining_evaluator = ParaphraseMiningEvaluator(
    sentences_map, duplicates_list, name="quora-duplicates-mining-dev"
)

# 3) Information retrieval: each first question retrieves its duplicates among all questions
queries = {question_ids[row["question1"]]: row["question1"] for row in dev_dataset if row["is_duplicate"]}
relevant_docs: dict[str, set[str]] = {}
for row in dev_dataset:
    if row["is_duplicate"]:
        relevant_docs.setdefault(question_ids[row["question1"]], set()).add(question_ids[row["question2"]])
ir_evaluator = InformationRetrievalEvaluator(queries, sentences_map, relevant_docs, name="quora-ir-dev")

evaluator = SequentialEvaluator(
    [binary_acc_evaluator, paraphrase_mining_evaluator, ir_evaluator],
    main_score_function=lambda scores: scores[-1],
)
logging.info("Evaluate model without training")
evaluator(model)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    fp16=False,
    bf16=False,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_steps=1,
    run_name="online-contrastive",
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=train_loss,
    evaluator=evaluator,
)
trainer.train()

evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-quora-online-contrastive")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-quora-online-contrastive')`."
    )
