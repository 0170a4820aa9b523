"""The ``fsdp`` / ``fsdp_config`` training arguments, parsed and checked on the driver (no torch import).

Names follow transformers' ``TrainingArguments``: ``fsdp=True`` turns sharded data parallelism (FSDP2) on; the
legacy strings ``"full_shard"``, ``"shard_grad_op"``, ``"offload"`` and ``"auto_wrap"`` (space-separated, or a
list) are read as transformers reads them. ``fsdp_config`` (a dict or the path of a JSON file; keys may carry
transformers' ``fsdp_`` prefix) accepts:

- ``reshard_after_forward`` (bool, default True): free the all-gathered block parameters after each forward and
  gather them again in backward (``"shard_grad_op"`` sets False: more memory, one all-gather less per block).
- ``cpu_offload`` (bool, default False): keep the parameter, gradient and optimizer shards in host memory.
- ``mixed_precision`` (``"bf16"``, ``"fp16"`` or None, default None): FSDP's ``MixedPrecisionPolicy`` with
  parameters and compute in that dtype and gradients reduced in float32.
- ``transformer_layer_cls_to_wrap`` (list of class names): the blocks to shard one by one; by default the
  classes in the Hugging Face model's ``_no_split_modules``.
- ``activation_checkpointing`` (bool, default False): recompute each block's activations in backward
  (torch's non-reentrant checkpoint wrapper around each block, applied before sharding).
- ``max_shard_size`` (int bytes or a size such as ``"5GB"``; default: transformers' ``save_pretrained``
  default): the exported ``model/`` directory's weights are split into ``model-0000i-of-0000N.safetensors`` files
  of at most this size (plus ``model.safetensors.index.json``), streamed one file at a time.
- ``version`` (only 2) and transformers' ``auto_wrap_policy="TRANSFORMER_BASED_WRAP"``, accepted for
  compatibility.

``parse_fsdp(fsdp, fsdp_config)`` returns ``FsdpOptions`` or None (FSDP off); bad input raises ``ValueError``
naming the key and the accepted values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEGACY_WORDS = ("full_shard", "shard_grad_op", "offload", "auto_wrap")
MIXED_PRECISION = ("bf16", "fp16")
_BOOL_KEYS = ("reshard_after_forward", "cpu_offload", "activation_checkpointing")
_KNOWN = (
    *_BOOL_KEYS,
    "mixed_precision",
    "transformer_layer_cls_to_wrap",
    "max_shard_size",
    "version",
    "auto_wrap_policy",
)


@dataclass(frozen=True)
class FsdpOptions:
    """How the FSDP strategy shards (see the module docstring for each field)."""

    reshard_after_forward: bool = True
    cpu_offload: bool = False
    mixed_precision: str | None = None
    transformer_layer_cls_to_wrap: tuple[str, ...] = field(default_factory=tuple)
    activation_checkpointing: bool = False
    max_shard_size: int | str | None = None


def fsdp_enabled(fsdp: Any) -> bool:
    """Whether the ``fsdp`` argument turns FSDP on (None, False, "" and [] do not)."""
    return fsdp not in (None, False, "", [], ())


def parse_fsdp(fsdp: Any, fsdp_config: Any) -> FsdpOptions | None:
    """``FsdpOptions`` for the arguments, or None when ``fsdp`` is off; ``ValueError`` names what is wrong."""
    if not fsdp_enabled(fsdp):
        if fsdp_config:
            raise ValueError("fsdp_config is set but fsdp is off: set fsdp=True (or remove fsdp_config)")
        return None
    config = _config_dict(fsdp_config)
    if fsdp is not True:
        _apply_legacy(fsdp, config)
    unknown = sorted(set(config) - set(_KNOWN))
    if unknown:
        raise ValueError(f"fsdp_config has unknown key(s) {unknown}; raystx accepts {', '.join(_KNOWN)}")
    for key in _BOOL_KEYS:
        if key in config:
            config[key] = _as_bool(key, config[key])
    if int(config.pop("version", 2)) != 2:
        raise ValueError("fsdp_config['version'] must be 2: raystx shards with FSDP2 (fully_shard) only")
    policy = config.pop("auto_wrap_policy", "TRANSFORMER_BASED_WRAP")
    if policy != "TRANSFORMER_BASED_WRAP":
        raise ValueError(
            f"fsdp_config['auto_wrap_policy']={policy!r} is not supported; raystx shards the transformer blocks "
            "one by one (TRANSFORMER_BASED_WRAP)"
        )
    precision = config.get("mixed_precision")
    if precision not in (None, *MIXED_PRECISION):
        raise ValueError(
            f"fsdp_config['mixed_precision']={precision!r} is not valid; use one of {MIXED_PRECISION} or None"
        )
    classes = config.get("transformer_layer_cls_to_wrap") or ()
    if isinstance(classes, str):
        classes = [classes]
    if not all(isinstance(c, str) and c for c in classes):
        raise ValueError(
            "fsdp_config['transformer_layer_cls_to_wrap'] must be a list of class names, e.g. ['BertLayer']"
        )
    config["transformer_layer_cls_to_wrap"] = tuple(classes)
    if "max_shard_size" in config:
        config["max_shard_size"] = _shard_size(config["max_shard_size"])
    return FsdpOptions(**config)


def _shard_size(value: Any) -> int | str:
    """``fsdp_config['max_shard_size']`` checked: a positive int (bytes) or a size string such as ``"5GB"``."""
    from huggingface_hub.serialization._base import parse_size_to_int  # the parser the split uses

    try:
        if isinstance(value, bool):
            raise ValueError
        size = int(value) if isinstance(value, int) else parse_size_to_int(str(value))
    except (TypeError, ValueError):
        size = 0
    if size <= 0:
        raise ValueError(
            f"fsdp_config['max_shard_size']={value!r} is not a size: give bytes (an int) or a string such as '5GB'"
        )
    return value


def _config_dict(fsdp_config: Any) -> dict[str, Any]:
    if fsdp_config is None:
        return {}
    if isinstance(fsdp_config, (str, Path)):
        path = Path(fsdp_config)
        if not path.is_file():
            raise ValueError(f"fsdp_config={str(fsdp_config)!r} is not a dict and not an existing JSON file")
        try:
            fsdp_config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"fsdp_config file {path} is not valid JSON ({exc})") from None
    if not isinstance(fsdp_config, dict):
        raise ValueError(f"fsdp_config must be a dict or a JSON file path, got {type(fsdp_config).__name__}")
    return {(k[5:] if k.startswith("fsdp_") else k): v for k, v in fsdp_config.items()}


def _apply_legacy(fsdp: Any, config: dict[str, Any]) -> None:
    """transformers' string/list forms: ``"full_shard offload"`` -> reshard_after_forward, cpu_offload."""
    words = fsdp.split() if isinstance(fsdp, str) else list(fsdp) if isinstance(fsdp, (list, tuple)) else None
    if words is None:
        raise ValueError(f"fsdp must be True, False or a string such as 'full_shard', got {fsdp!r}")
    for word in words:
        if word == "full_shard":
            config.setdefault("reshard_after_forward", True)
        elif word == "shard_grad_op":
            config.setdefault("reshard_after_forward", False)
        elif word == "offload":
            config.setdefault("cpu_offload", True)
        elif word != "auto_wrap":
            raise ValueError(
                f"fsdp={fsdp!r}: {word!r} is not a valid option; use True, or words of {', '.join(LEGACY_WORDS)} "
                "(hybrid_shard and no_shard are FSDP1 strategies raystx does not offer)"
            )


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"fsdp_config[{key!r}] must be true or false, got {value!r}")


def check_fsdp_run(
    options: FsdpOptions | None,
    losses: dict[str, Any],
    has_eval_dataset: bool,
    num_workers: int,
    drop_last: bool,
) -> list[str]:
    """Driver-side checks of an FSDP run before any worker starts: raises ``ValueError`` for what cannot work
    (every rank must run the same forwards, see ``raystx.train.strategy_fsdp``); returns warnings."""
    if options is None:
        return []
    errors = []
    for dataset, loss in losses.items():
        for module in loss.modules():
            if getattr(module, "mini_batch_num_tokens", None) is not None:
                errors.append(
                    f"dataset {dataset!r}: {type(module).__name__}(mini_batch_num_tokens=...) cuts mini-batches by "
                    "each rank's own token counts, so ranks would run different numbers of sharded forwards; "
                    "use mini_batch_size with fsdp"
                )
            elif getattr(module, "uses_gradient_cache", False) and not drop_last:
                errors.append(
                    f"dataset {dataset!r}: {type(module).__name__} with dataloader_drop_last=False can give ranks "
                    "last batches of different sizes, hence different numbers of sharded mini-batch forwards; "
                    "keep dataloader_drop_last=True with fsdp"
                )
    if has_eval_dataset:
        errors.append(
            "eval_dataset with fsdp is not supported yet: the sharded eval loss runs a different number of "
            "batches per rank, and sharded forwards need every rank; use an evaluator, or fsdp off"
        )
    if errors:
        raise ValueError("fsdp cannot run this configuration:\n  - " + "\n  - ".join(errors))
    if num_workers <= 1:
        return [
            "fsdp with 1 worker shards nothing (it trains like replicated training, with FSDP's overhead)"
        ]
    return []
