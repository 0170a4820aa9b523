"""Evaluate a saved model with a config's evaluator: the ``ray job submit`` entry point over ``raystx eval``.

    python jobs/eval.py --config jobs/configs/train.yaml --model /path/to/model [--set key=value ...]

Prints the evaluator's metrics as JSON; exit status 0 on success, 1 on failure, 2 for a bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("eval"))
