"""Adaptive layer training: a model whose first layers already give usable embeddings.

AdaptiveLayerLoss applies the inner loss to the final layer and to a random earlier layer each step (with a KL
term pulling earlier layers toward the last), so layers can be dropped at inference for speed.

Usage: python adaptive_layer_nli.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import SentenceTransformer, losses, models
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.similarity_functions import SimilarityFunction
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "distilroberta-base")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = (
    f"{os.environ.get('PORT_OUTPUT', 'output')}/adaptive_layer_nli-{datetime.now():%Y-%m-%d_%H-%M-%S}"
)

transformer = models.Transformer(model_name)
pooling = models.Pooling(transformer.get_word_embedding_dimension(), "mean")
model = SentenceTransformer(modules=[transformer, pooling])

train_dataset = load_dataset("json", data_files=f"{data_dir}/nli_triplets.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")

inner_train_loss = losses.MultipleNegativesRankingLoss(model)
train_loss = losses.AdaptiveLayerLoss(model, inner_train_loss)

stsb_evaluator = EmbeddingSimilarityEvaluator(
    eval_dataset["sentence1"],
    eval_dataset["sentence2"],
    [score / 5.0 for score in eval_dataset["score"]],
    main_similarity=SimilarityFunction.COSINE,
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
    save_strategy="no",
    logging_steps=1,
    run_name="adaptive-layer-nli",
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

# Evaluate the trained model, then save it
stsb_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-nli-adaptive-layer")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-nli-adaptive-layer')`."
    )
