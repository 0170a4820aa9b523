"""Small local data for the port scripts: a few dozen rows per file over the tiny models' vocabulary.

``write_port_data(folder)`` writes the files the scripts in ``scripts/`` read from ``PORT_DATA``; every value is
deterministic (seeded), so the oracle run and the raystx run of a script see the same rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from raystx.testing import unique_sentences

N_TRAIN = 48
N_DEV = 16


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_port_data(folder: Path) -> Path:
    """Write nli_pairs / nli_triplets / sts_train / sts_dev / quora_pairs / quora_dev / qa_pairs (.jsonl) and
    sentences.txt into ``folder``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(14)
    texts = unique_sentences(4 * N_TRAIN + 4 * N_DEV, seed=140)
    a, p, n = texts[:N_TRAIN], texts[N_TRAIN : 2 * N_TRAIN], texts[2 * N_TRAIN : 3 * N_TRAIN]
    dev1 = texts[3 * N_TRAIN : 3 * N_TRAIN + N_DEV]
    dev2 = texts[3 * N_TRAIN + N_DEV : 3 * N_TRAIN + 2 * N_DEV]
    _jsonl(
        folder / "nli_pairs.jsonl",
        [{"premise": x, "hypothesis": y, "label": rng.randrange(3)} for x, y in zip(a, p)],
    )
    _jsonl(
        folder / "nli_triplets.jsonl",
        [{"anchor": x, "positive": y, "negative": z} for x, y, z in zip(a, p, n)],
    )
    _jsonl(
        folder / "sts_train.jsonl",
        [{"sentence1": x, "sentence2": y, "score": round(rng.uniform(0, 5), 2)} for x, y in zip(a, n)],
    )
    _jsonl(
        folder / "sts_dev.jsonl",
        [{"sentence1": x, "sentence2": y, "score": round(rng.uniform(0, 5), 2)} for x, y in zip(dev1, dev2)],
    )
    _jsonl(
        folder / "quora_pairs.jsonl",
        [{"question1": x, "question2": y, "is_duplicate": rng.randrange(2)} for x, y in zip(p, n)],
    )
    # dev pairs reuse some questions, so paraphrase mining and retrieval have duplicates to find
    dev_rows = [
        {"question1": x, "question2": y, "is_duplicate": i % 2} for i, (x, y) in enumerate(zip(dev1, dev2))
    ]
    dev_rows += [
        {"question1": dev1[i], "question2": dev2[i + 1], "is_duplicate": 0} for i in range(N_DEV - 1)
    ]
    _jsonl(folder / "quora_dev.jsonl", dev_rows)
    _jsonl(folder / "qa_pairs.jsonl", [{"query": x, "answer": y} for x, y in zip(a, p)])
    (folder / "sentences.txt").write_text("\n".join(a + p) + "\n", encoding="utf-8")
    return folder
