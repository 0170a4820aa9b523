"""Knowledge distillation: a student learns to reproduce a teacher's embeddings with MSELoss.

The teacher embeds every training sentence once; those embeddings become the ``label`` column and MSELoss
regresses the student's embeddings onto them. An MSEEvaluator reports the remaining gap on held-out sentences.

Usage: python model_distillation_mse.py [student_name_or_path] [teacher_name_or_path]
Environment: PORT_MODEL (student), PORT_TEACHER, PORT_DATA, PORT_OUTPUT.
"""

import logging
import os
import sys
import traceback
from datetime import datetime

from datasets import Dataset
from sentence_transformers import LoggingHandler, SentenceTransformer, evaluation, losses
from sentence_transformers.trainer import SentenceTransformerTrainer
from sentence_transformers.training_args import SentenceTransformerTrainingArguments

logging.basicConfig(
    format="%(asctime)s - %(message)s",
    datefmt="%Y-%m-%d %H:%M:%S",
    level=logging.INFO,
    handlers=[LoggingHandler()],
)

student_name = (
    sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "nreimers/TinyBERT_L-4_H-312_v2")
)
teacher_name = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("PORT_TEACHER", "all-mpnet-base-v2")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = (
    f"{os.environ.get('PORT_OUTPUT', 'output')}/model_distillation-{datetime.now():%Y-%m-%d_%H-%M-%S}"
)

teacher_model = SentenceTransformer(teacher_name)
student_model = SentenceTransformer(student_name)
assert student_model.get_sentence_embedding_dimension() == teacher_model.get_sentence_embedding_dimension()

with open(f"{data_dir}/sentences.txt", encoding="utf-8") as f:
    sentences = [line.strip() for line in f if line.strip()]
train_sentences, eval_sentences = sentences[:-16], sentences[-16:]

# The teacher's embeddings are the regression targets
logging.info("Embedding %d training sentences with the teacher", len(train_sentences))
train_embeddings = teacher_model.encode(train_sentences, batch_size=32, convert_to_numpy=True)
train_dataset = Dataset.from_dict({"sentence": train_sentences, "label": train_embeddings.tolist()})

train_loss = losses.MSELoss(model=student_model)

dev_evaluator_mse = evaluation.MSEEvaluator(
    eval_sentences, eval_sentences, teacher_model=teacher_model, name="mse-dev"
)
logging.info(dev_evaluator_mse(student_model))

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=2,
    per_device_train_batch_size=8,
    learning_rate=1e-4,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_steps=1,
    run_name="distillation",
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=student_model,
    args=args,
    train_dataset=train_dataset,
    loss=train_loss,
    evaluator=dev_evaluator_mse,
)
trainer.train()

logging.info(dev_evaluator_mse(student_model))
final_output_dir = f"{output_dir}/final"
student_model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    student_model.push_to_hub("distilled-student")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
