"""How a callback's ``TrainerControl`` decision on rank 0 reaches every rank, and when the loop reads it.

Callbacks run on rank 0 only, but a stop, an extra evaluation, log or save must happen on every rank (they make
collective calls). ``share_control`` all-reduces rank 0's five flags (one tensor of 5 numbers) so every rank
holds the same control. The loop never adds a per-step collective for this; it reads the control

* at every step where something is already due (a logging, evaluation or save step, the last step, a
  preemption save): ``should_log`` / ``should_evaluate`` / ``should_save`` add that event to this step and are
  then cleared, ``should_training_stop`` ends training after this step (with a final checkpoint);
* right after every evaluation (after ``on_evaluate``), so ``EarlyStoppingCallback`` stops at the evaluation
  step that exhausted its patience;
* after ``eval_on_start``'s evaluation.

A flag set by a callback at a step where nothing is due (e.g. in ``on_step_end``) takes effect at the next such
step: at the latest after ``logging_steps`` steps (or ``eval_steps`` / ``save_steps`` when logging is off).
``should_epoch_stop`` is shared but not acted on (the data plan is fixed per epoch).
"""

from __future__ import annotations

import torch

from raystx.distributed import all_reduce_mean
from raystx.train.trainer_callback import TrainerControl


def share_control(control: TrainerControl, rank: int, device: torch.device | None = None) -> TrainerControl:
    """Set ``control`` on every rank to rank 0's flags (every rank must call this at the same point). ``device``:
    where the collective runs (the rank's device: NCCL needs GPU tensors)."""
    flags = control.flags() if rank == 0 else [False] * len(control.flags())
    shared = all_reduce_mean(
        torch.tensor([float(f) for f in flags], dtype=torch.float32, device=device)
    ).cpu()
    control.set_flags([bool(v > 0) for v in shared.tolist()])
    return control
