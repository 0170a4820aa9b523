"""Metrics-only reports are thinned to the runtime's minimum interval (Ray Train takes one per controller poll
and blocks the step on a second); checkpoint, evaluation and final reports always go out, and the driver-side
history still has every logged step."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_resume_local import _payload  # noqa: E402

from raystx.models import SentenceTransformer  # noqa: E402
from raystx.train.runtime import LocalRuntime  # noqa: E402
from raystx.train.worker import train_worker  # noqa: E402


class _SlowConsumer(LocalRuntime):
    min_report_interval_s = 3600.0  # nothing but the essential reports within this test


def test_metrics_only_reports_are_thinned_but_saves_and_the_end_are_not(tmp_path, tiny_bert_dir):
    every = LocalRuntime(tmp_path / "every")
    train_worker(_payload(tmp_path / "every", SentenceTransformer(str(tiny_bert_dir))), every)
    assert [r["step"] for r in every.reports] == [1, 2, 3, 4, 5, 6]  # logging_steps=1, no interval

    thinned = _SlowConsumer(tmp_path / "thin")
    out = train_worker(_payload(tmp_path / "thin", SentenceTransformer(str(tiny_bert_dir))), thinned)
    # step 1 is due (nothing reported yet); then only the save steps (2, 4, 6; 6 is also the last)
    assert [r["step"] for r in thinned.reports] == [1, 2, 4, 6]
    assert thinned.reports[-1]["done"] is True
    assert [c.name for c in thinned.checkpoints] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert [h["step"] for h in out["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]
