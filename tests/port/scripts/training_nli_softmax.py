"""Train a bi-encoder on NLI pairs with SoftmaxLoss (the original Sentence-BERT recipe).

The model gets (premise, hypothesis) pairs with an integer label (0 entailment, 1 neutral, 2 contradiction);
SoftmaxLoss puts a classifier on top of (u, v, |u - v|). After training the model is tested on an STS split.

Usage: python training_nli_softmax.py [model_name_or_path]
Environment: PORT_MODEL (model), PORT_DATA (data folder), PORT_OUTPUT (output folder).
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
from sentence_transformers.training_args import SentenceTransformerTrainingArguments

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "bert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
output_root = os.environ.get("PORT_OUTPUT", "output")
train_batch_size = 8
output_dir = f"{output_root}/training_nli_softmax-{datetime.now():%Y-%m-%d_%H-%M-%S}"

# 1. Build the model from its parts: a transformer and mean pooling
word_embedding_model = models.Transformer(model_name, max_seq_length=64)
pooling_model = models.Pooling(word_embedding_model.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[word_embedding_model, pooling_model])

# 2. Load the NLI pairs (premise, hypothesis, label) and an STS split to test on
train_dataset = load_dataset("json", data_files=f"{data_dir}/nli_pairs.jsonl", split="train")
eval_dataset = load_dataset("json", data_files=f"{data_dir}/sts_dev.jsonl", split="train")
logging.info(train_dataset)

# 3. The loss: a softmax classifier over the concatenated sentence embeddings
train_loss = losses.SoftmaxLoss(
    model=model,
    sentence_embedding_dimension=model.get_sentence_embedding_dimension(),
    num_labels=3,
)

# 4. An evaluator for the STS split (scores normalized to 0..1)
dev_evaluator = EmbeddingSimilarityEvaluator(
    sentences1=eval_dataset["sentence1"],
    sentences2=eval_dataset["sentence2"],
    scores=[score / 5.0 for score in eval_dataset["score"]],
    main_similarity=SimilarityFunction.COSINE,
    name="sts-dev",
)
dev_evaluator(model)

# 5. Training arguments
args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=train_batch_size,
    per_device_eval_batch_size=train_batch_size,
    warmup_ratio=0.1,
    fp16=False,  # set to True on a GPU that supports FP16
    bf16=False,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="no",
    logging_steps=1,
    run_name="nli-softmax",
    report_to="none",
    seed=12,
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

# 7. Evaluate the trained model, then save it
dev_evaluator(model)
final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

# 8. Upload it to the Hugging Face Hub (fails without a login; the model is saved locally anyway)
model_name_only = model_name.rstrip("/").split("/")[-1]
try:
    model.push_to_hub(f"{model_name_only}-nli-softmax")
except Exception:
    logging.error(
        f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}To upload it manually, you can run "
        f"`huggingface-cli login`, followed by loading the model using `model = SentenceTransformer({final_output_dir!r})` "
        f"and saving it using `model.push_to_hub('{model_name_only}-nli-softmax')`."
    )
