"""Fixtures of the port suite: the tiny models and data the scripts read, and a Ray head the raystx runs join.

Imported by the test module rather than kept in a ``conftest.py``: a second module named ``conftest`` would
replace ``tests/conftest.py`` for the ``from conftest import ...`` of test modules collected after this folder.

The head is one ``ray start --head --block`` of this suite (free ports, its own ``--temp-dir``, token auth via
``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``; nothing written to ``~/.ray``), started once per session and
stopped by terminating that process (``tests/ray_head.py``, shared with the live job tests). Each ported script is a separate
Python process that joins it through ``RAY_ADDRESS``: measured on the 2-core dev machine under load, joining
took 0.3 s and ``ray.init(address="local")`` in each script 70 s (and a script's own ``ray.init()`` could join
another ``ray start`` cluster on the machine). Ray workers are started by the
head, so the head's environment carries ``PYTHONPATH`` (this checkout's raystx) and the offline settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from port_data import write_port_data
from ray_head import start_head

from raystx.testing import build_tiny_bert

REPO = Path(__file__).resolve().parents[2]

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class PortAssets:
    """Paths the scripts read through ``PORT_*`` environment variables."""

    model: Path  # tiny random BERT, hidden 32
    guide: Path  # a second tiny BERT (other seed): GIST guide, distillation teacher, Router document tower
    wide: Path  # tiny BERT with hidden 768 (Matryoshka dims 768..64)
    data: Path

    def env(self) -> dict[str, str]:
        return {
            "PORT_MODEL": str(self.model),
            "PORT_GUIDE": str(self.guide),
            "PORT_TEACHER": str(self.guide),
            "PORT_WIDE_MODEL": str(self.wide),
            "PORT_DATA": str(self.data),
        }


@pytest.fixture(scope="session")
def port_assets(tmp_path_factory) -> PortAssets:
    root = tmp_path_factory.mktemp("port-assets")
    return PortAssets(
        model=build_tiny_bert(root / "tiny", seed=0),
        guide=build_tiny_bert(root / "guide", seed=1),
        wide=build_tiny_bert(root / "wide", seed=2, hidden=768),
        data=write_port_data(root / "data"),
    )


@pytest.fixture(scope="session")
def ray_head() -> Iterator[dict[str, str]]:
    """Start a token-auth Ray head (4 CPUs) for the session; yields the environment a client needs to join it."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    with start_head("rport-", num_cpus=4, dashboard=False, env={**OFFLINE, "PYTHONPATH": pythonpath}) as head:
        yield dict(head.env, RAY_ADDRESS=head.gcs_address)
