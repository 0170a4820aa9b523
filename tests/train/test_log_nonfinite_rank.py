"""A logging step where only one rank's loss is non-finite: every rank still joins the logging all-reduce.

Before the fix, the rank whose micro-batches since the last log line were all non-finite skipped the reduction
(it had nothing to average) while the others entered it, so the ranks' collectives fell out of step: a hang, or
one rank's all-reduce pairing with another's next collective. Runs raystx's real per-worker loop on 2 gloo
processes (no Ray), replicated parameters, a log line every step.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fsdp_harness import run_loop  # noqa: E402

ARGS = dict(
    max_steps=3,
    per_device_train_batch_size=8,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    logging_steps=1,
    save_strategy="no",
    seed=1,
    optim="adamw_torch",
)


def test_one_ranks_non_finite_loss_on_a_logging_step_neither_hangs_nor_drops_the_line(
    tmp_path, tiny_bert_dir
):
    spec = dict(model_dir=str(tiny_bert_dir))
    # rank 1's loss is NaN in step 3 of 3; rank 0's stays finite
    skipped = run_loop(2, dict(spec, loss="nan", out=str(tmp_path / "nan"), args=ARGS), timeout=240)
    clean = run_loop(2, dict(spec, loss="mnrl", out=str(tmp_path / "two"), args=dict(ARGS, max_steps=2)))
    assert skipped["global_step"] == 3
    assert len(skipped["losses"]) == 3 and math.isfinite(skipped["losses"][2])  # rank 0's finite part
    assert skipped["losses"][:2] == clean["losses"]
    for key, value in clean["weights"].items():  # step 3 was skipped on both ranks
        torch.testing.assert_close(skipped["weights"][key], value, rtol=0, atol=1e-6)
