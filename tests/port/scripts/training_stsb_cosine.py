"""Fine-tune a model on STS Benchmark-style pairs with CosineSimilarityLoss.

Each pair has a gold similarity score in 0..5, normalized to 0..1; the loss regresses the cosine similarity of
the two embeddings onto it. The model is evaluated with an EmbeddingSimilarityEvaluator before and after.

Usage: python training_stsb_cosine.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import load_dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "distilbert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/training_stsb-{datetime.now():%Y-%m-%d_%H-%M-%S}"

# 1. A plain Hugging Face checkpoint gets mean pooling automatically
model = SentenceTransformer(model_name)

# 2. Load the pairs and normalize the scores to 0..1
train_dataset = load_dataset("json", data_files=f"{data_dir}/sts_train.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")
train_dataset = train_dataset.map(lambda row: {"score": row["score"] / 5.0})
eval_dataset = eval_dataset.map(lambda row: {"score": row["score"] / 5.0})

# 3. The loss
train_loss = CosineSimilarityLoss(model=model)

# 4. The evaluator, run once before training as a baseline
dev_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=eval_dataset["sentence1"],
    sentences2=eval_dataset["sentence2"],
    scores=eval_dataset["score"],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)
logging.info(dev_evaluator(model))

# 5. Training arguments
args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    learning_rate=5e-5,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=1,
    logging_steps=1,
    run_name="sts",
    report_to="none",
)

# 6. Train
trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=train_loss,
    evaluator=dev_evaluator,
)
trainer.train()

# 7. Evaluate and save
logging.info(dev_evaluator(model))
final_output_dir = f"{output_dir}/final"
model.save_pretrained(final_output_dir)
print(f"SAVED {final_output_dir}")

# 8. Push to the Hub (needs a login; failure is reported, not fatal)
model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-sts")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-sts')`."
    )
