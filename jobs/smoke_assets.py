"""Write what ``jobs/configs/smoke.yaml`` reads: a tiny random BERT and a small STS-style data set.

    python jobs/smoke_assets.py /tmp/raystx-smoke
    RAYSTX_SMOKE_DIR=/tmp/raystx-smoke python jobs/train.py --config jobs/configs/smoke.yaml

Layout under the folder: ``model/`` (a Hugging Face BERT with hidden size 32 and its WordPiece tokenizer,
built by ``tests/conftest.py``; no download), ``stsb/train.tsv`` and ``stsb/validation.tsv`` (tab-separated
``sentence1, sentence2, score`` with scores 0-5, like the real STS-B files ``jobs/configs/train.yaml`` reads).
Needs the repository checkout (``tests/``) and the dev extras; everything is deterministic given ``seed``.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _conftest():
    """The tiny-model builders (they live in ``raystx.testing``; no pytest needed)."""
    import raystx.testing

    return raystx.testing


def sts_rows(n: int, seed: int) -> list[tuple[str, str, float]]:
    """``n`` (sentence1, sentence2, score) rows: sentence2 is sentence1 with some words replaced, and the
    score is 5 x the share of words kept (rounded to 0.2)."""
    conftest = _conftest()
    rng = random.Random(seed)
    rows = []
    for sentence in conftest.make_sentences(n, seed=seed, min_len=4, max_len=10):
        words = sentence.split()
        changed = rng.randint(0, len(words))
        for i in rng.sample(range(len(words)), changed):
            words[i] = rng.choice(conftest.WORDS)
        kept = sum(a == b for a, b in zip(sentence.split(), words))
        rows.append((sentence, " ".join(words), round(5.0 * kept / len(words) * 5) / 5))
    return rows


def write_tsv(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows(rows)
    return path


def write_smoke_assets(
    directory: Path, train_rows: int = 64, dev_rows: int = 32, seed: int = 0
) -> dict[str, Path]:
    """Write the tiny model and the data under ``directory``; return their paths by name."""
    directory = Path(directory)
    model = _conftest().build_tiny_bert(directory / "model", seed=seed)
    return {
        "model": model,
        "train": write_tsv(directory / "stsb" / "train.tsv", sts_rows(train_rows, seed)),
        "validation": write_tsv(directory / "stsb" / "validation.tsv", sts_rows(dev_rows, seed + 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--train-rows", type=int, default=64)
    parser.add_argument("--dev-rows", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, path in write_smoke_assets(args.directory, args.train_rows, args.dev_rows, args.seed).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
