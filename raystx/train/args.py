"""Training arguments, named as in sentence-transformers' ``SentenceTransformerTrainingArguments``.

A plain dataclass (no pydantic, no Ray) so that the per-worker loop can run anywhere torch runs.
``validate(use_gpu=...)`` is called on the driver before any worker starts; its errors name the fields.

Every field of transformers' ``TrainingArguments`` is accepted (keyword-only, after raystx's own fields; see
``raystx.train.hf_fields``): a script written for sentence-transformers never fails with ``TypeError`` here.
Fields that have no meaning on Ray Train, or that the training loop does not use yet, are named in one
``IgnoredArgumentWarning`` when set to anything but their default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from raystx.train.hf_fields import EXTRA_FIELDS


class BatchSamplers(str, Enum):
    """How rows of one dataset are grouped into batches."""

    BATCH_SAMPLER = "batch_sampler"
    NO_DUPLICATES = "no_duplicates"
    # same batches as NO_DUPLICATES (sentence-transformers hashes the texts to compare them faster)
    NO_DUPLICATES_HASHED = "no_duplicates_hashed"
    GROUP_BY_LABEL = "group_by_label"


class MultiDatasetBatchSamplers(str, Enum):
    """Which dataset each global step draws from (the same on every worker)."""

    ROUND_ROBIN = "round_robin"
    PROPORTIONAL = "proportional"


class IntervalStrategy(str, Enum):
    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"


SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd")


class IgnoredArgumentWarning(UserWarning):
    """Training arguments that were set but have no effect in raystx (the message says what to use instead)."""


def _extra_field(default: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), kw_only=True)
    return field(default=default, kw_only=True)


# transformers' other TrainingArguments fields, keyword-only so that raystx's own field order is kept
_TransformersFields = dataclasses.make_dataclass(
    "_TransformersFields", [(name, Any, _extra_field(spec.default)) for name, spec in EXTRA_FIELDS.items()]
)
_TransformersFields.__module__ = __name__


@dataclass
class SentenceTransformerTrainingArguments(_TransformersFields):
    """What to train for and how; field names and defaults follow sentence-transformers / transformers."""

    output_dir: str = "outputs"
    overwrite_output_dir: bool = False
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    optim: str = "adamw_torch_fused"
    optim_args: str | None = None
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    fp16: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False
    batch_sampler: BatchSamplers | str | Callable[..., Any] = BatchSamplers.BATCH_SAMPLER
    multi_dataset_batch_sampler: MultiDatasetBatchSamplers | str = MultiDatasetBatchSamplers.PROPORTIONAL
    multi_dataset_weights: dict[str, float] | None = None
    prompts: str | dict[str, str] | dict[str, dict[str, str]] | None = None
    learning_rate_mapping: dict[str, float] | None = None
    # column -> Router route ("query"/"document"), or dataset -> {column -> route}
    router_mapping: dict[str, str] | dict[str, dict[str, str]] | None = None
    eval_strategy: IntervalStrategy | str = IntervalStrategy.NO
    eval_steps: float | None = None
    eval_on_start: bool = False
    save_strategy: IntervalStrategy | str = IntervalStrategy.STEPS
    save_steps: float = 500
    save_total_limit: int | None = None
    logging_strategy: IntervalStrategy | str = IntervalStrategy.STEPS
    logging_steps: float = 500
    logging_first_step: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    seed: int = 42
    data_seed: int | None = None
    run_name: str | None = None
    report_to: str | list[str] = "none"
    resume_from_checkpoint: str | bool | None = None
    dataloader_drop_last: bool = True
    dataloader_prefetch_batches: int = 2
    max_consecutive_bad_steps: int = 10
    # sharded data parallelism (FSDP2), named as in transformers: fsdp=True (or "full_shard", "shard_grad_op",
    # "offload"), tuned by fsdp_config (raystx.train.fsdp_options); None/False keeps every worker's full copy
    fsdp: bool | str | list[str] | None = None
    fsdp_config: dict[str, Any] | str | None = None
    preemption_check_steps: int = 10
    disable_tqdm: bool | None = None
    # raystx only: how long the driver waits for the Ray Train workers to start (all of them placed at once)
    # before it stops the run with WorkersPendingError; None waits forever (raystx.train.pending)
    max_pending_s: float | None = 600.0
    # raystx only: keep the staged copy of the datasets ({output_dir}/.raystx-data) after a run, and each node's
    # Arrow cache of it ($TMPDIR/raystx-data-cache/<run tag>, raystx.data.cache_cleanup); both are removed otherwise
    keep_staged_data: bool = False
    # raystx only: the epoch order of each dataset (raystx.data.window_shuffle). None/0: a full permutation of
    # its rows. k >= 1: its shards (row groups of the staged Parquet, else blocks of shuffle_block_size rows)
    # in a seeded order, rows mixed within each window of k shards: a rank's next steps then read a few shards
    # (locality) at the price of less mixing; a window covering every shard is the full permutation again.
    shuffle_window: int | None = None
    shuffle_block_size: int = 8192
    # raystx only: bytes of Parquet row groups one worker keeps per dataset (raystx.data.shard_reader): remote
    # files' row groups in the node-local cache folder, local files' in memory; least recently used evicted
    data_cache_max_bytes: int = 1024**3

    def __post_init__(self) -> None:
        self.optim = str(getattr(self.optim, "value", self.optim))
        if isinstance(self.warmup_steps, float) and 0 < self.warmup_steps < 1 and not self.warmup_ratio:
            # transformers 5 reads a float warmup_steps below 1 as a ratio of the total steps
            self.warmup_ratio, self.warmup_steps = self.warmup_steps, 0
        for name in ("learning_rate_mapping", "prompts", "router_mapping"):
            value = getattr(self, name)
            if isinstance(value, str):  # a stringified dict, as sentence-transformers accepts
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError:
                    if name != "prompts":  # a plain string is a single prompt for every column
                        raise ValueError(
                            f"{name} must be a dict or a JSON object string, got {value!r}"
                        ) from None
        if self.router_mapping is None:
            self.router_mapping = {}
        # a class or callable is a user batch sampler (raystx.data.custom_sampler)
        if not callable(self.batch_sampler):
            self.batch_sampler = _enum(BatchSamplers, self.batch_sampler, "batch_sampler")
        self.multi_dataset_batch_sampler = _enum(
            MultiDatasetBatchSamplers, self.multi_dataset_batch_sampler, "multi_dataset_batch_sampler"
        )
        self.eval_strategy = _enum(IntervalStrategy, self.eval_strategy, "eval_strategy")
        self.save_strategy = _enum(IntervalStrategy, self.save_strategy, "save_strategy")
        self.logging_strategy = _enum(IntervalStrategy, self.logging_strategy, "logging_strategy")
        if isinstance(self.report_to, str):
            self.report_to = [] if self.report_to in ("none", "") else [self.report_to]
        if self.eval_strategy is IntervalStrategy.STEPS and self.eval_steps is None:
            self.eval_steps = self.logging_steps
        self._warn_ignored()

    def _warn_ignored(self) -> None:
        """One warning naming every set field that raystx does not use, with what to use instead."""
        lines = []
        for name, spec in EXTRA_FIELDS.items():
            if spec.kind in ("noop", "wired") or _same(getattr(self, name), spec.default):
                continue
            lines.append(f"{name}: {spec.note}")
        if lines:
            warnings.warn(
                "These training arguments have no effect in raystx:\n  - " + "\n  - ".join(lines),
                IgnoredArgumentWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ validation
    def validate(self, use_gpu: bool = False) -> None:
        """Raise ``ValueError`` naming the offending fields; called on the driver before workers start."""
        errors: list[str] = []
        positive_ints = (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        )
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                errors.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            errors.append("num_train_epochs must be > 0 when max_steps is not set")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            errors.append(f"learning_rate must be a positive number (got {self.learning_rate})")
        if not 0.0 <= self.warmup_ratio < 1.0:
            errors.append(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.warmup_steps < 0:
            errors.append(f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        if self.optim not in OPTIMIZERS:
            errors.append(
                f"optim={self.optim!r} is not supported by raystx; use one of {', '.join(OPTIMIZERS)}"
            )
        if self.lr_scheduler_type not in SCHEDULERS:
            errors.append(
                f"lr_scheduler_type={self.lr_scheduler_type!r} is not one of {', '.join(SCHEDULERS)}"
            )
        if self.fp16 and self.bf16:
            errors.append("fp16 and bf16 cannot both be True")
        if self.fp16 and not use_gpu:
            errors.append(
                "fp16=True needs GPU workers (ScalingConfig(use_gpu=True)); on CPU use bf16=True or neither"
            )
        for strategy, steps in (("eval", "eval_steps"), ("save", "save_steps"), ("logging", "logging_steps")):
            if getattr(self, f"{strategy}_strategy") is IntervalStrategy.STEPS:
                value = getattr(self, steps)
                if value is None or value <= 0:
                    errors.append(f"{strategy}_strategy='steps' needs {steps} > 0 (got {value})")
        errors += self._best_model_errors()
        if self.max_pending_s is not None and not self.max_pending_s > 0:
            errors.append(
                f"max_pending_s must be > 0 seconds, or None to wait forever (got {self.max_pending_s})"
            )
        if self.shuffle_window is not None and int(self.shuffle_window) < 0:
            errors.append(
                f"shuffle_window must be a number of shards >= 1, or None (YAML null) / 0 for a full "
                f"permutation of the rows (got {self.shuffle_window})"
            )
        if int(self.data_cache_max_bytes) < 1:
            errors.append(f"data_cache_max_bytes must be >= 1 byte (got {self.data_cache_max_bytes})")
        if int(self.shuffle_block_size) < 1:
            errors.append(f"shuffle_block_size must be >= 1 rows (got {self.shuffle_block_size})")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            errors.append(f"save_total_limit must be >= 1 or None (got {self.save_total_limit})")
        if self.multi_dataset_weights is not None and any(
            w <= 0 for w in self.multi_dataset_weights.values()
        ):
            errors.append("multi_dataset_weights must all be > 0")
        errors += self._fsdp_errors()
        if errors:
            raise ValueError("Invalid training arguments:\n  - " + "\n  - ".join(errors))

    def _fsdp_errors(self) -> list[str]:
        from raystx.train.fsdp_options import parse_fsdp

        try:
            parse_fsdp(self.fsdp, self.fsdp_config)
        except ValueError as exc:
            return [str(exc)]
        return []

    def _best_model_errors(self) -> list[str]:
        """What ``load_best_model_at_end`` needs: evaluations, and saves at the evaluated steps."""
        errors: list[str] = []
        if not self.load_best_model_at_end:
            return errors
        if self.eval_strategy is IntervalStrategy.NO:
            errors.append("load_best_model_at_end=True needs eval_strategy 'steps' or 'epoch' (it is 'no')")
        elif self.save_strategy is not self.eval_strategy:
            errors.append(
                "load_best_model_at_end=True needs save_strategy == eval_strategy "
                f"(save_strategy={self.save_strategy.value!r}, eval_strategy={self.eval_strategy.value!r})"
            )
        elif self.eval_strategy is IntervalStrategy.STEPS and self.save_steps % self.eval_steps != 0:
            errors.append(
                f"load_best_model_at_end=True needs save_steps ({self.save_steps}) to be a multiple of "
                f"eval_steps ({self.eval_steps})"
            )
        return errors

    def to_dict(self) -> dict[str, Any]:
        """Field values with enums as their values and tokens masked (``hub_token`` -> ``"<HUB_TOKEN>"``)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_token") and value is not None:
                value = f"<{f.name.upper()}>"
            if isinstance(value, Enum):
                value = value.value
            elif callable(value):  # a user batch sampler: its name
                value = getattr(value, "__qualname__", type(value).__name__)
            out[f.name] = value
        return out

    def non_default_items(self) -> dict[str, Any]:
        """Fields whose value differs from the default (for the model card)."""
        defaults = SentenceTransformerTrainingArguments()
        own, base = self.to_dict(), defaults.to_dict()
        return {k: v for k, v in own.items() if v != base[k] and k not in ("output_dir", "run_name")}

    @property
    def steps_interval_strategy(self) -> dict[str, IntervalStrategy]:
        return {"eval": self.eval_strategy, "save": self.save_strategy, "logging": self.logging_strategy}


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except Exception:  # e.g. arrays
        return False


def _enum(cls: type[Enum], value: Any, name: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        options = ", ".join(repr(m.value) for m in cls)  # type: ignore[attr-defined]
        raise ValueError(f"{name}={value!r} is not valid; expected one of {options}") from None
