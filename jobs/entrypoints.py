"""The job commands, written once: ``jobs/README.md``, the RayJob manifests in ``cluster/kuberay/`` and the
live job test all use these strings (``tests/ops/test_manifests.py`` asserts the manifests match).

Every command is relative to the job's working directory (the repository root: ``--working-dir .`` for
``ray job submit``, the image's ``/home/ray/raystx`` for KubeRay).
"""

from __future__ import annotations

import shlex

TRAIN_CONFIG = "jobs/configs/train.yaml"
SMOKE_CONFIG = "jobs/configs/smoke.yaml"


def command(script: str, config: str, *extra: str) -> str:
    """``python jobs/{script}.py --config {config} [extra...]`` as one shell-quoted string."""
    return shlex.join(["python", f"jobs/{script}.py", "--config", config, *extra])


TRAIN = command("train", TRAIN_CONFIG)
"""Fine-tune all-MiniLM-L6-v2 with CoSENT on STS-B (``rayjob-train.yaml``)."""

TUNE = command("tune", TRAIN_CONFIG)
"""Sweep over the training config with ``raystx tune`` (``rayjob-tune.yaml``)."""

SMOKE = command("train", SMOKE_CONFIG)
"""A tiny random model for a few steps (the live job test; a cluster smoke check)."""

ENTRYPOINTS: dict[str, str] = {"train": TRAIN, "tune": TUNE, "smoke": SMOKE}

RUNTIME_ENV = "jobs/runtime_env.yaml"


def submit_command(address: str, entrypoint: str = TRAIN) -> str:
    """The ``ray job submit`` command line of ``jobs/README.md``, run from the repository root."""
    return (
        f"ray job submit --address {address} --working-dir . --runtime-env {RUNTIME_ENV} "
        f"--entrypoint-num-cpus 1 -- {entrypoint}"
    )
