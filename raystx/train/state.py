"""The typed state a checkpoint records: ``trainer_state.json``.

One dataclass, ``CheckpointState``, is written by the step loop (``to_json``) and read back by the resume path,
the trainer (which loads the final or best checkpoint into the driver's model) and the model card
(``read_trainer_state``). Its ``data_position`` (a ``DataPosition``) says which rows of the current epoch were
trained, so a run resumes exactly, also on another number of workers (see ``raystx.train.cursor``).

Older checkpoints (a plain dict without ``data_position`` or ``global_batch_size``) still load: missing fields
take their defaults and ``DataCursor.restore`` recomputes the position from the plan they trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STATE_FILE = "trainer_state.json"
DATA_POSITION_FILE = "data_position.npz"


@dataclass
class DataPosition:
    """Rows of ``epoch`` trained so far, per dataset (counts; row-id bitmaps live in ``row_sets``).

    ``plan_start``/``plan_round_robin_start`` describe where the epoch's current plan began (non-zero after a
    resume with another global batch size); ``rows_consumed``/``round_robin_next`` where training stands now.
    ``row_sets`` names the ``.npz`` file in the checkpoint holding row-id bitmaps (duplicate-/label-aware
    samplers), or is ``None`` when counts are enough. ``shuffle_window``/``shuffle_block_size`` are the
    settings of the epoch order the counts refer to (``raystx.data.window_shuffle``; absent in older
    checkpoints, which used the full permutation). ``rank_stripes`` is True when each rank walked its own
    stretch of a windowed order (``raystx.data.window_shuffle.rank_striped_batches``; then the trained rows are
    row ids and the plan depends on the world size); absent in older windowed checkpoints, which did not.
    """

    epoch: int
    global_batch_size: int
    datasets: list[str]
    plan_start: dict[str, int] = field(default_factory=dict)
    plan_round_robin_start: int = 0
    rows_consumed: dict[str, int] = field(default_factory=dict)
    round_robin_next: int = 0
    row_sets: str | None = None
    shuffle_window: int | None = None
    shuffle_block_size: int | None = None
    rank_stripes: bool | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataPosition:
        return cls(**_known_fields(cls, raw))


@dataclass
class CheckpointState:
    """Where a run stood when a checkpoint was written (``trainer_state.json``)."""

    global_step: int
    epoch: int
    step_in_epoch: int
    max_steps: int = 0
    world_size: int = 1
    global_batch_size: int | None = None
    data_position: DataPosition | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    # False: model and state only, no optimizer/scheduler/RNG (``save_only_model``); cannot be resumed from
    resumable: bool = True
    manifest: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what ``trainer_state.json`` holds, before the manifest is added)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CheckpointState:
        values = _known_fields(cls, raw)
        position = values.get("data_position")
        if isinstance(position, dict):
            values["data_position"] = DataPosition.from_dict(position)
        return cls(**values)


def _known_fields(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``raw`` that are fields of ``cls`` (later versions may add keys an older reader skips)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}
