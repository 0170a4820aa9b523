"""Readers for retrieval sets: local BEIR-format directories and the NanoBEIR subsets on the Hugging Face Hub.

A BEIR directory holds ``corpus.jsonl`` (``_id``, optional ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``; header line optional). Every reader
returns ``(queries, corpus, relevant_docs)`` dicts ready for ``InformationRetrievalEvaluator``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

RetrievalSet = tuple[dict[str, str], dict[str, str], dict[str, set[str]]]


def is_beir_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory with ``corpus.jsonl`` and ``queries.jsonl``."""
    path = Path(path)
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _qrels_file(directory: Path, split: str) -> Path:
    qrels_dir = directory / "qrels"
    preferred = qrels_dir / f"{split}.tsv"
    if preferred.is_file():
        return preferred
    candidates = sorted(qrels_dir.glob("*.tsv"))
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(
        f"{directory}: expected qrels/{split}.tsv (or a single qrels/*.tsv), found {[c.name for c in candidates]}"
    )


def load_beir_dir(directory: str | Path, split: str = "test") -> RetrievalSet:
    """Read a BEIR-format directory. Documents are ``"{title} {text}"`` (just ``text`` without a title);
    empty queries/documents are dropped; a qrel counts as relevant when its score is > 0."""
    directory = Path(directory)
    corpus = {}
    for row in _read_jsonl(directory / "corpus.jsonl"):
        text = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        if text:
            corpus[str(row["_id"])] = text
    queries = {
        str(row["_id"]): row["text"] for row in _read_jsonl(directory / "queries.jsonl") if row.get("text")
    }
    relevant: dict[str, set[str]] = {}
    with open(_qrels_file(directory, split), encoding="utf-8", newline="") as handle:
        for fields in csv.reader(handle, delimiter="\t"):
            if not fields or fields[0] == "query-id":
                continue
            qid, cid = fields[0], fields[1]
            score = float(fields[2]) if len(fields) > 2 and fields[2] != "" else 1.0
            if score > 0:
                relevant.setdefault(qid, set()).add(cid)
    return queries, corpus, relevant


def load_hf_subsets(dataset_id: str, split: str) -> RetrievalSet:
    """Read the ``corpus``/``queries``/``qrels`` subsets of a Hub (or local ``datasets``) dataset at ``split``."""
    try:
        from datasets import load_dataset
    except ImportError as err:  # pragma: no cover - datasets is a runtime dependency
        raise ValueError("NanoBEIREvaluator needs the `datasets` package to load from the Hub") from err

    def load(subset: str, required: list[str]):
        try:
            data = load_dataset(dataset_id, subset, split=split)
        except Exception as err:
            raise ValueError(
                f"Could not load subset {subset!r} split {split!r} from dataset {dataset_id!r}."
            ) from err
        if missing := set(required) - set(data.column_names):
            raise ValueError(
                f"Subset {subset!r} split {split!r} of {dataset_id!r} lacks columns {sorted(missing)}"
            )
        return data

    corpus = {row["_id"]: row["text"] for row in load("corpus", ["_id", "text"]) if len(row["text"]) > 0}
    queries = {row["_id"]: row["text"] for row in load("queries", ["_id", "text"]) if len(row["text"]) > 0}
    relevant: dict[str, set[str]] = {}
    for row in load("qrels", ["query-id", "corpus-id"]):
        docs = relevant.setdefault(row["query-id"], set())
        cids = row["corpus-id"]
        docs.update(cids if isinstance(cids, list) else [cids])
    return queries, corpus, relevant
