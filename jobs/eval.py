"""Evaluate a saved model with the evaluators of a config on Ray workers: the ``ray job submit`` entry point over
``raystx evaluate``.

    RAYSTX_DATA_DIR=../shared/data python jobs/eval.py --config jobs/configs/eval.yaml [--model DIR] [--set k=v ...]

Every evaluator's encoding is split across ``scaling.num_workers`` Ray workers; the metrics are written to the
config's ``output_dir`` as ``metrics.json`` and ``metrics.md`` and printed as JSON. ``--model`` sets
``model.name_or_path``. Exit status 0 on success, 1 on failure, 2 for a bad config. (A training config's single
evaluator runs in one process with ``raystx eval CONFIG --model DIR``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("evaluate"))
