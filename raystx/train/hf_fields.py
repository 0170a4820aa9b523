"""Fields of transformers' ``TrainingArguments`` (and sentence-transformers') that raystx accepts beyond its own.

A sentence-transformers script may pass any ``TrainingArguments`` field; ``SentenceTransformerTrainingArguments``
accepts them all so that no script fails with ``TypeError``. Each field here has transformers' default and a
``kind``:

* ``"ray"`` — no meaning on Ray Train (process launch, DDP, DeepSpeed, Accelerate); ``note`` says what to use
  instead. Setting one to a non-default value gives one ``IgnoredArgumentWarning`` naming it.
* ``"unwired"`` — meaningful, but the training loop does not read it yet; setting it warns the same way so
  nothing is ignored silently. Remove a name from this kind when the loop starts using it.
* ``"wired"`` — read by raystx with transformers' meaning (named here because raystx's own dataclass does not
  declare it).
* ``"noop"`` — accepted and without effect in raystx by design (evaluation-loop and metric options of
  transformers' Trainer that raystx's evaluators do not have, bookkeeping flags such as ``do_train``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCALING = "Ray Train launches the workers: set ScalingConfig(num_workers=..., use_gpu=...)"
NO_DDP = (
    "raystx does not wrap the model in DDP: gradients are averaged in one flat all-reduce and parameters "
    "without a gradient count as zero"
)
SHARDED = "raystx shards with FSDP2: set fsdp=True (and fsdp_config) instead; ScalingConfig sets the workers"
RANK_ZERO = "on Ray Train rank 0 logs and saves; set the storage with RunConfig(storage_path=...)"
NOT_YET = "accepted, but the raystx training loop does not use it yet"


@dataclass(frozen=True)
class ExtraField:
    """transformers' default for the field, how raystx treats it, and (``ray`` kind) what to use instead."""

    default: Any
    kind: str
    note: str = ""


def _ray(default: Any, note: str) -> ExtraField:
    return ExtraField(default, "ray", note)


def _unwired(default: Any) -> ExtraField:
    return ExtraField(default, "unwired", NOT_YET)


def _wired(default: Any, note: str) -> ExtraField:
    return ExtraField(default, "wired", note)


def _noop(default: Any) -> ExtraField:
    return ExtraField(default, "noop", "no effect in raystx")


EXTRA_FIELDS: dict[str, ExtraField] = {
    # no meaning on Ray Train
    "local_rank": _ray(-1, "Ray Train assigns ranks; " + SCALING),
    "ddp_backend": _ray(None, "Ray Train creates the process group (gloo on CPU, nccl on GPU); " + SCALING),
    "ddp_timeout": _ray(1800, "Ray Train creates the process group with its own timeout"),
    "ddp_find_unused_parameters": _ray(None, NO_DDP),
    "ddp_bucket_cap_mb": _ray(None, NO_DDP),
    "ddp_broadcast_buffers": _ray(None, NO_DDP),
    "ddp_static_graph": _ray(None, NO_DDP),
    "deepspeed": _ray(None, SHARDED),
    "parallelism_config": _ray(None, SHARDED),
    "accelerator_config": _ray(None, "raystx does not use Accelerate; " + SCALING),
    "auto_find_batch_size": _ray(False, "an Accelerate feature; set per_device_train_batch_size yourself"),
    "log_on_each_node": _ray(True, RANK_ZERO),
    "save_on_each_node": _ray(False, RANK_ZERO),
    "log_level_replica": _ray("warning", RANK_ZERO),
    "debug": _ray("", "transformers' TPU/underflow debugging is not available on Ray Train"),
    # meaningful, not read by the training loop yet
    "eval_delay": _unwired(0),
    "eval_accumulation_steps": _unwired(None),
    "include_num_input_tokens_seen": _unwired("no"),
    "torch_compile": _unwired(False),
    "torch_compile_backend": _unwired(None),
    "torch_compile_mode": _unwired(None),
    "tf32": _unwired(None),
    "torch_empty_cache_steps": _unwired(None),
    "gradient_checkpointing_kwargs": _unwired(None),
    "activation_checkpointing": _unwired(None),
    "activation_checkpointing_kwargs": _unwired(None),
    "push_to_hub": _unwired(False),
    "hub_model_id": _unwired(None),
    "hub_strategy": _unwired("every_save"),
    "hub_token": _unwired(None),
    "hub_private_repo": _unwired(None),
    "hub_always_push": _unwired(False),
    "hub_revision": _unwired(None),
    "save_only_model": _wired(
        False, "checkpoints hold the model only: no optimizer/scheduler/RNG, no resume"
    ),
    "use_cpu": _unwired(False),
    "dataloader_num_workers": _unwired(0),
    "dataloader_pin_memory": _unwired(True),
    "dataloader_persistent_workers": _unwired(False),
    "dataloader_prefetch_factor": _unwired(None),
    "dataloader_multiprocessing_context": _unwired(None),
    "full_determinism": _unwired(False),
    "ignore_data_skip": _unwired(False),
    "restore_callback_states_from_checkpoint": _unwired(False),
    "bf16_full_eval": _unwired(False),
    "fp16_full_eval": _unwired(False),
    "logging_nan_inf_filter": _unwired(True),
    "average_tokens_across_devices": _unwired(True),
    "neftune_noise_alpha": _unwired(None),
    "use_liger_kernel": _unwired(False),
    "liger_kernel_config": _unwired(None),
    "optim_target_modules": _unwired(None),
    "enable_jit_checkpoint": _unwired(False),
    # accepted, no effect by design
    "do_train": _noop(False),
    "do_eval": _noop(False),
    "do_predict": _noop(False),
    "prediction_loss_only": _noop(False),
    "label_smoothing_factor": _noop(0.0),
    "remove_unused_columns": _noop(True),
    "label_names": _noop(None),
    "train_sampling_strategy": _noop("random"),
    "length_column_name": _noop("length"),
    "dataloader_in_order": _noop(True),
    "skip_memory_metrics": _noop(True),
    "log_level": _noop("passive"),
    "project": _noop("huggingface"),
    "trackio_space_id": _noop(None),
    "trackio_bucket_id": _noop(None),
    "trackio_static_space_id": _noop(None),
    "include_for_metrics": _noop([]),
    "batch_eval_metrics": _noop(False),
    "eval_do_concat_batches": _noop(True),
    "eval_use_gather_object": _noop(False),
    "use_cache": _noop(False),
}
