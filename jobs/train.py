"""Train on Ray from a YAML config: the ``ray job submit`` entry point over ``raystx train``.

    python jobs/train.py --config jobs/configs/train.yaml [--set key=value ...] [--resume]

    # on a running cluster (see jobs/README.md for auth tokens and outputs):
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env jobs/runtime_env.yaml \
        --entrypoint-num-cpus 1 -- python jobs/train.py --config jobs/configs/train.yaml

Runs exactly ``raystx train CONFIG``, after turning ``${VAR}`` references in the config and the
``RAYSTX_OVERRIDES`` variable into ``--set`` overrides (``jobs/launch.py``). Exit status: 0 when training
finished and the model was saved, 1 when it failed, 2 for a bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("train"))
