"""``DataCursor``: one worker's position in the training data, and the batches from there on.

The cursor owns everything about *which rows come next*: the epoch's ``EpochPlan`` (a pure function of seed,
epoch, dataset sizes and the global batch size, identical on every rank), the current ``epoch`` and
``step_in_epoch``, the batches this rank reads for the coming steps, and the data position a checkpoint records
(``position()``) and a resumed run puts back (``restore()``), also for another global batch size (another worker
count): then the rest of the epoch is planned from the rows the checkpoint says were trained.

In: the run's data sources (``num_rows``, ``input_columns``, ``label_column``, ``open()``), the training
arguments (batch size, seed, samplers), this worker's rank and the world size.
Out: ``batches(collate)`` yields ``(step, Batch)`` for the rest of the current epoch; ``advance(step)`` moves the
cursor past a trained step and says whether the epoch ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raystx.data.collate import Prefetcher
from raystx.data.schedule import Consumed, EpochPlan, dataset_order
from raystx.data.window_shuffle import DEFAULT_BLOCK_SIZE
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.position import decode_consumed, encode_consumed
from raystx.train.state import DATA_POSITION_FILE, CheckpointState, DataPosition

logger = logging.getLogger("raystx.train")

PREFETCH_STEPS = 8  # steps ahead whose shards a RowGroupReader fetches in the background


@dataclass
class Batch:
    """One rank's slice of a global step: the dataset it comes from, collated features and labels, row ids."""

    dataset: str
    features: list[dict[str, Any]]
    labels: Any
    rows: np.ndarray


class DataCursor:
    """Plans, reads and tracks the rows one worker trains on (see the module docstring)."""

    def __init__(
        self,
        sources: dict[str, Any],
        args: SentenceTransformerTrainingArguments,
        rank: int,
        world_size: int,
    ) -> None:
        self.sources = sources
        self.args = args
        self.rank = rank
        self.world_size = world_size
        self.opened = {name: src.open() for name, src in sources.items()}
        self.epoch = 0
        self.step_in_epoch = 0
        # Where the current epoch's plan starts: after rows an earlier run (with another global batch size)
        # already trained in that epoch (``EpochPlan``'s ``consumed``).
        self._start_epoch = -1
        self._start_consumed: dict[str, Consumed] = {}
        self._start_round_robin = 0
        self._plan_cache: tuple[int, EpochPlan] | None = None
        self.steps_per_epoch = len(self.plan(0))  # exact for the default sampler; epoch 0's count otherwise

    @property
    def global_batch_size(self) -> int:
        return self.args.per_device_train_batch_size * self.world_size

    @property
    def sizes(self) -> dict[str, int]:
        return {n: s.num_rows for n, s in self.sources.items()}

    # ------------------------------------------------------------------ plans
    def plan(self, epoch: int | None = None) -> EpochPlan:
        """This worker's plan of ``epoch`` (default: the current one; cached for the last epoch asked)."""
        epoch = self.epoch if epoch is None else epoch
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        resumed = epoch == self._start_epoch
        plan = self._make_plan(
            epoch,
            self.global_batch_size,
            self._start_consumed if resumed else None,
            self._start_round_robin if resumed else 0,
        )
        self._plan_cache = (epoch, plan)
        return plan

    def _make_plan(
        self,
        epoch: int,
        global_batch_size: int,
        consumed: dict[str, Consumed] | None = None,
        round_robin_start: int = 0,
    ) -> EpochPlan:
        """The plan of ``epoch`` for a global batch size (its batches depend only on that, not on the split into
        workers), starting after ``consumed`` rows. ``rows(step, rank)`` needs the real per-device size."""
        args = self.args
        per_device = args.per_device_train_batch_size
        split = global_batch_size % per_device == 0
        return EpochPlan(
            self.sizes,
            per_device if split else global_batch_size,
            global_batch_size // per_device if split else 1,
            args.data_seed if args.data_seed is not None else args.seed,
            epoch,
            args.multi_dataset_batch_sampler.value,
            args.multi_dataset_weights,
            batch_sampler=getattr(args.batch_sampler, "value", args.batch_sampler),
            columns=self._dataset if callable(args.batch_sampler) else self._columns,
            consumed=consumed,
            round_robin_start=round_robin_start,
            drop_last=args.dataloader_drop_last,
            shuffle_window=args.shuffle_window,
            shard_rows={n: getattr(s, "shard_rows", None) for n, s in self.sources.items()},
            shuffle_block_size=args.shuffle_block_size,
        )

    def _dataset(self, name: str) -> tuple[Any, list[str]]:
        """A dataset's rows as a ``datasets.Dataset`` and its label columns, for a user batch sampler."""
        import datasets

        source, data = self.sources[name], self.opened[name]
        labels = [source.label_column] if source.label_column else []
        columns = [*source.input_columns, *labels]
        return datasets.Dataset.from_dict({c: list(data[c]) for c in columns}), labels

    def _columns(self, name: str) -> tuple[list[tuple], list | None]:
        """Row texts (all input columns) and labels of a dataset, for the duplicate-/label-aware samplers."""
        source, data = self.sources[name], self.opened[name]
        texts = list(zip(*(list(data[c]) for c in source.input_columns)))
        labels = list(data[source.label_column]) if source.label_column else None
        if self.args.batch_sampler.value == "group_by_label" and labels is None:
            raise ValueError(
                f"batch_sampler='group_by_label' needs a label column; dataset {name!r} has none"
            )
        return texts, labels

    # ------------------------------------------------------------------ moving through the data
    def at_epoch_end(self) -> bool:
        return self.step_in_epoch >= len(self.plan())

    def next_epoch(self) -> None:
        self.epoch, self.step_in_epoch = self.epoch + 1, 0

    def advance(self, step: int) -> bool:
        """Mark ``step`` of the current epoch as trained; True when that ended the epoch."""
        self.step_in_epoch = step + 1
        return self.at_epoch_end()

    def batches(self, collate: Callable[[str, Any], tuple[Any, Any]], depth: int) -> Prefetcher:
        """``(step, Batch)`` for the rest of the current epoch, read and collated ``depth`` steps ahead in a
        thread. ``collate(dataset, rows_table)`` returns ``(features, labels)``. Close it when done."""
        plan = self.plan()
        ahead = max(PREFETCH_STEPS, depth + 1)
        self._prefetch(plan, range(self.step_in_epoch, min(len(plan), self.step_in_epoch + ahead)))

        def make(step: int) -> Batch:
            name, rows = plan.rows(step, self.rank)
            if step + ahead < len(plan):
                self._prefetch(plan, [step + ahead])
            features, labels = collate(name, self.opened[name][[int(i) for i in rows]])
            return Batch(name, features, labels, rows)

        return Prefetcher(range(self.step_in_epoch, len(plan)), make, depth=depth)

    def _prefetch(self, plan: EpochPlan, steps: Any) -> None:
        """Ask the sources that can (``RowGroupReader``) to fetch the shards of this rank's rows of ``steps``."""
        for step in steps:
            name, rows = plan.rows(step, self.rank)
            prefetch = getattr(self.opened[name], "prefetch", None)
            if prefetch is not None:
                prefetch(rows)

    def read_stats(self) -> dict[str, dict[str, int]]:
        """Per dataset, what its reader fetched (``RowGroupReader.stats()``; datasets without one are left out)."""
        return {n: t.stats() for n, t in self.opened.items() if callable(getattr(t, "stats", None))}

    def epoch_progress(self) -> float:
        """Epochs trained, as a float (a resumed epoch's plan covers only the steps that were left)."""
        step = self.step_in_epoch
        if self.epoch == self._start_epoch:
            step += max(self.steps_per_epoch - len(self.plan()), 0)
        return self.epoch + step / max(self.steps_per_epoch, 1)

    def steps_left(self, num_train_epochs: float) -> float:
        """Global steps (micro-batches) left in this epoch and the later ones of an epoch budget."""
        left = len(self.plan()) - self.step_in_epoch
        return left + (num_train_epochs - self.epoch - 1) * self.steps_per_epoch

    # ------------------------------------------------------------------ checkpoint position
    def position(self) -> tuple[DataPosition, dict[str, np.ndarray]]:
        """The data position for a checkpoint, plus row-id bitmaps to save as ``DATA_POSITION_FILE``."""
        plan = self.plan()
        resumed = self.epoch == self._start_epoch
        names = list(self.sources)
        arrays: dict[str, np.ndarray] = {}

        def encode(values: dict[str, Consumed], key: str) -> dict[str, int]:
            return encode_consumed(values, key, names, self.sizes, arrays)

        position = DataPosition(
            epoch=self.epoch,
            global_batch_size=plan.global_batch_size,
            datasets=names,
            plan_start=encode(self._start_consumed if resumed else {}, "plan_start"),
            plan_round_robin_start=self._start_round_robin if resumed else 0,
            rows_consumed=encode(plan.consumed_through(self.step_in_epoch), "rows_consumed"),
            round_robin_next=plan.round_robin_next(self.step_in_epoch),
            shuffle_window=self.args.shuffle_window or None,
            shuffle_block_size=self.args.shuffle_block_size if self.args.shuffle_window else None,
            rank_stripes=plan.rank_stripes or None,
        )
        position.row_sets = DATA_POSITION_FILE if arrays else None
        return position, arrays

    def restore(self, state: CheckpointState, path: Path) -> bool:
        """Put a checkpoint's data position in place; True when the epoch was re-planned (so a run with an
        epoch budget must recount its optimizer steps).

        Same global batch size: the epoch's plan is rebuilt as it was and ``step_in_epoch`` continues in it (bit
        for bit the uninterrupted run). Another one: the rest of the epoch is planned from the rows the
        checkpoint says were trained (exact for one dataset with the default sampler, every row at most once
        otherwise). Checkpoints without a recorded position get it recomputed from the plan they trained on.
        """
        self.epoch, self.step_in_epoch = state.epoch, state.step_in_epoch
        position = state.data_position
        if position is not None and position.epoch != self.epoch:
            position = None
        old_global = self._saved_global_batch(state, position)
        start = consumed = None
        round_robin_start = round_robin_next = 0
        if position is not None:
            arrays = self._row_sets(position, path)
            start = decode_consumed(dataclass_dict(position), "plan_start", self.sizes, arrays)
            consumed = decode_consumed(dataclass_dict(position), "rows_consumed", self.sizes, arrays)
            round_robin_start, round_robin_next = position.plan_round_robin_start, position.round_robin_next
        reordered = position is not None and _order_settings(position) != self._order_settings()
        if reordered and consumed is not None:  # counts of another epoch order: as the row ids they meant
            consumed = self._as_row_ids(consumed, position)
        # rank stripes make the plan depend on the split into workers, not only on the global batch size
        same_split = not self._order_settings()[2] or int(state.world_size or 0) == self.world_size
        if old_global == self.global_batch_size and same_split and not reordered:
            if start and any(not isinstance(v, int) or v for v in start.values()):
                self._set_start(start, round_robin_start)  # the resumed plan it was in, again
                return True
            return False
        if consumed is None:  # an older checkpoint: the plan it trained on, from its own global batch size
            old_plan = self._make_plan(self.epoch, old_global)
            consumed = old_plan.consumed_through(self.step_in_epoch)
            round_robin_next = old_plan.round_robin_next(self.step_in_epoch)
        old_step = self.step_in_epoch
        self._set_start(consumed, round_robin_next)
        self.step_in_epoch = 0
        if reordered:
            logger.warning(
                "Resuming with shuffle_window=%s (the checkpoint had %s): epoch %d continues without the rows "
                "it trained, the rest in the new order",
                self.args.shuffle_window,
                position.shuffle_window if position is not None else None,
                self.epoch,
            )
            return True
        logger.warning(
            "Resuming with a global batch of %d (%d workers; the checkpoint had %d on %d): epoch %d continues "
            "after the %s rows trained in its first %d steps, in %d new steps",
            self.global_batch_size,
            self.world_size,
            old_global,
            state.world_size,
            self.epoch,
            {n: (v if isinstance(v, int) else len(v)) for n, v in consumed.items()},
            old_step,
            len(self.plan()),
        )
        return True

    def _order_settings(self) -> tuple[int, int | None, bool]:
        """What this run's epoch order depends on besides seed, epoch and data (window 0: full permutation), and
        whether ranks walk their own stretches of it (rank stripes, with a window and the default sampler)."""
        window = int(self.args.shuffle_window or 0)
        stripes = bool(window) and getattr(self.args.batch_sampler, "value", self.args.batch_sampler) == (
            "batch_sampler"
        )
        return window, (int(self.args.shuffle_block_size) if window else None), stripes

    def _as_row_ids(self, consumed: dict[str, Consumed], position: DataPosition) -> dict[str, Consumed]:
        """``consumed`` with every count (a prefix of the checkpoint's epoch order) turned into row ids."""
        window, block, _ = _order_settings(position)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        out: dict[str, Consumed] = {}
        for name, value in consumed.items():
            if isinstance(value, (int, np.integer)):
                order = dataset_order(
                    self.sizes[name],
                    seed,
                    self.epoch,
                    name,
                    shuffle_window=window or None,
                    shard_rows=getattr(self.sources[name], "shard_rows", None),
                    shuffle_block_size=block or DEFAULT_BLOCK_SIZE,
                )
                value = np.sort(order[: int(value)])
            out[name] = value
        return out

    def _saved_global_batch(self, state: CheckpointState, position: DataPosition | None) -> int:
        if position is not None:
            return int(position.global_batch_size)
        if state.global_batch_size:
            return int(state.global_batch_size)
        return self.args.per_device_train_batch_size * int(state.world_size or self.world_size)

    @staticmethod
    def _row_sets(position: DataPosition, path: Path) -> dict[str, np.ndarray]:
        if not position.row_sets:
            return {}
        with np.load(Path(path) / position.row_sets, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def _set_start(self, consumed: dict[str, Consumed], round_robin_start: int) -> None:
        self._start_epoch, self._start_consumed = self.epoch, dict(consumed)
        self._start_round_robin = round_robin_start
        self._plan_cache = None


def _order_settings(position: DataPosition) -> tuple[int, int | None, bool]:
    """The epoch-order settings a checkpoint's counts refer to (as ``DataCursor._order_settings``)."""
    window = int(position.shuffle_window or 0)
    block = int(position.shuffle_block_size or DEFAULT_BLOCK_SIZE) if window else None
    return window, block, bool(position.rank_stripes)


def dataclass_dict(position: DataPosition) -> dict[str, Any]:
    """``position`` as the mapping ``decode_consumed`` reads."""
    import dataclasses

    return dataclasses.asdict(position)
