"""The pre-v3 training API: InputExample lists, a DataLoader and ``model.fit``.

Old scripts build ``InputExample(texts=[...], label=...)`` objects, wrap them in a torch DataLoader and call
``model.fit(train_objectives=[(dataloader, loss)], ...)``. This still works (fit now runs the trainer underneath).

Usage: python training_fit_api.py [model_name_or_path]
Environment: PORT_MODEL, PORT_DATA, PORT_OUTPUT.
"""

import json
import logging
import os
import sys
import traceback
from datetime import datetime

from sentence_transformers import InputExample, LoggingHandler, SentenceTransformer, losses
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
from torch.utils.data import DataLoader

logging.basicConfig(
    format="%(asctime)s - %(message)s",
    datefmt="%Y-%m-%d %H:%M:%S",
    level=logging.INFO,
    handlers=[LoggingHandler()],
)

model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "bert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
model_save_path = f"{os.environ.get('PORT_OUTPUT', 'output')}/training_fit-{datetime.now():%Y-%m-%d_%H-%M-%S}"

model = SentenceTransformer(model_name)


def read_examples(path):
    examples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            examples.append(
                InputExample(texts=[row["sentence1"], row["sentence2"]], label=row["score"] / 5.0)
            )
    return examples


train_samples = read_examples(f"{data_dir}/sts_train.jsonl")
dev_samples = read_examples(f"{data_dir}/sts_dev.jsonl")

train_dataloader = DataLoader(train_samples, shuffle=True, batch_size=8)
train_loss = losses.CosineSimilarityLoss(model=model)
evaluator = EmbeddingSimilarityEvaluator.from_input_examples(dev_samples, name="sts-dev")

model.fit(  # PORT: scaling_config
    train_objectives=[(train_dataloader, train_loss)],
    evaluator=evaluator,
    epochs=1,
    evaluation_steps=2,
    warmup_steps=1,
    output_path=model_save_path,
    show_progress_bar=False,
)

model = SentenceTransformer(model_save_path)
evaluator(model)
print(f"SAVED {model_save_path}")

try:
    model.push_to_hub("sts-fit-api")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
