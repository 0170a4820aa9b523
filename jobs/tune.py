"""Hyperparameter search on Ray from a YAML config: the ``ray job submit`` entry point over ``raystx tune``.

    python jobs/tune.py --config jobs/configs/train.yaml [--set key=value ...] [raystx tune options ...]

Forwards to ``raystx tune CONFIG`` (the config needs ``search:``/``tune:`` sections); options this script does
not know are passed on unchanged. Exit status: 0 when the sweep finished, 1 when it failed, 2 for a bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("tune"))
