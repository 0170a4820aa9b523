"""An asymmetric query/document model: a Router sends queries and documents through different towers.

Each tower is a transformer with mean pooling; ``router_mapping`` tells the trainer that the ``query`` column
goes through the query route and the ``answer`` column through the document route. Trained with
MultipleNegativesRankingLoss and evaluated with an InformationRetrievalEvaluator.

Usage: python router_query_document.py [query_model] [document_model]
Environment: PORT_MODEL (query tower), PORT_GUIDE (document tower), PORT_DATA, PORT_OUTPUT.
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
from sentence_transformers.evaluation import InformationRetrievalEvaluator
from sentence_transformers.losses import MultipleNegativesRankingLoss
from sentence_transformers.models import Pooling, Router, Transformer
from sentence_transformers.training_args import BatchSamplers

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO)

query_model_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT_MODEL", "prajjwal1/bert-small")
document_model_name = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("PORT_GUIDE", "bert-base-uncased")
data_dir = os.environ.get("PORT_DATA", "data")
output_dir = f"{os.environ.get('PORT_OUTPUT', 'output')}/router_qd-{datetime.now():%Y-%m-%d_%H-%M-%S}"

query_transformer = Transformer(query_model_name)
document_transformer = Transformer(document_model_name)
router = Router.for_query_document(
    query_modules=[query_transformer, Pooling(query_transformer.get_word_embedding_dimension(), "mean")],
    document_modules=[
        document_transformer,
        Pooling(document_transformer.get_word_embedding_dimension(), "mean"),
    ],
)
model = SentenceTransformer(modules=[router])

dataset = load_dataset("json", data_files=f"{data_dir}/qa_pairs.jsonl", split="train")
dataset = dataset.train_test_split(test_size=8, seed=12)
train_dataset, eval_dataset = dataset["train"], dataset["test"]

loss = MultipleNegativesRankingLoss(model)

queries = {f"q{i}": query for i, query in enumerate(eval_dataset["query"])}
corpus = {
    f"d{i}": answer for i, answer in enumerate(list(eval_dataset["answer"]) + list(train_dataset["answer"]))
}
relevant_docs = {f"q{i}": {f"d{i}"} for i in range(len(eval_dataset))}
ir_evaluator = InformationRetrievalEvaluator(queries, corpus, relevant_docs, name="qa-dev")
ir_evaluator(model)

args = SentenceTransformerTrainingArguments(
    output_dir=output_dir,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    learning_rate=5e-5,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    router_mapping={"query": "query", "answer": "document"},
    save_strategy="no",
    logging_steps=1,
    report_to="none",
)

trainer = SentenceTransformerTrainer(  # PORT: scaling_config
    model=model,
    args=args,
    train_dataset=train_dataset,
    loss=loss,
    evaluator=ir_evaluator,
)
trainer.train()

ir_evaluator(model)
query_embeddings = model.encode_query(["the cat sits on the road"])
document_embeddings = model.encode_document(["a dog runs in the park"])
logging.info("query/document similarity: %s", model.similarity(query_embeddings, document_embeddings))

final_output_dir = f"{output_dir}/final"
model.save(final_output_dir)
print(f"SAVED {final_output_dir}")

try:
    model.push_to_hub("router-query-document")
except Exception:
    logging.error(f"Error uploading model to the Hugging Face Hub:\n{traceback.format_exc()}")
