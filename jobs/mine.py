"""Mine hard negatives with a config: the ``ray job submit`` entry point over ``raystx mine``.

    RAYSTX_DATA_DIR=../shared/data python jobs/mine.py --config jobs/configs/mine.yaml [--set key=value ...]

Writes the mined dataset as Parquet to the config's ``output_path`` and prints a JSON summary; exit status 0
on success, 1 on failure, 2 for a bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("mine"))
