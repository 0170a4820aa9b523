"""Hyperparameter search: Optuna picks learning rate, warmup and batch size; the best setting trains the model.

``model_init(trial)`` builds a fresh model for every trial, ``loss`` is a function of the model, and the objective
is the STS evaluator's Spearman correlation. Afterwards the best hyperparameters train the final model.

Usage: python hpo_model_init.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import SentenceTransformer, losses
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "distilbert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/hpo_nli-{datetime.now():%Y-%m-%d_%H-%M-%S}"

train_dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")

dev_evaluator = EmbeddingSimilarityEvaluator(
    eval_dataset["sentence1"],
    eval_dataset["sentence2"],
    [score / 5.0 for score in eval_dataset["score"]],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)


def hpo_search_space(trial):
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.3),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [4, 8]),
    }


def hpo_model_init(trial):
    return SentenceTransformer(model_name)


def hpo_loss_init(model):
    return losses.MultipleNegativesRankingLoss(model)


def hpo_compute_objective(metrics):
    return metrics["eval_sts-dev_spearman_cosine"]


args = SentenceTransformerTrainingArguments(
    output_dir=f"{output_dir}/hpo",
    num_train_epochs=1,
    max_steps=2,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    eval_strategy="no",
    save_strategy="no",
    logging_steps=1,
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=None,
    args=args,
    train_dataset=train_dataset,
    evaluator=dev_evaluator,
    model_init=hpo_model_init,
    loss=hpo_loss_init,
)
best_trial = trainer.hyperparameter_search(
    hp_space=hpo_search_space,
    compute_objective=hpo_compute_objective,
    n_trials=2,
    direction="maximize",
    backend="optuna",
)
logging.info("Best trial: %s", best_trial)

# Train the final model with the best hyperparameters
final_args = SentenceTransformerTrainingArguments(
    output_dir=f"{output_dir}/best",
    num_train_epochs=1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    save_strategy="no",
    logging_steps=1,
    report_to="none",
    **best_trial.hyperparameters,
)
model = SentenceTransformer(model_name)
final_trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=final_args,
    train_dataset=train_dataset,
    loss=losses.MultipleNegativesRankingLoss(model),
    evaluator=dev_evaluator,
)
final_trainer.train()

dev_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    model.push_to_hub("nli-hpo-best")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
