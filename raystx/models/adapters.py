"""PEFT adapters (LoRA, LoHa, IA3, ...) on the Hugging Face model inside a SentenceTransformer.

The adapters are injected in place into the Transformer module's ``auto_model`` with peft's public functional API
(``peft.functional``), as sentence-transformers does through transformers' integration (which needs peft >= 0.22;
this module works with the peft releases before that too). The semantics follow sentence-transformers 6.x:

- ``add_adapter(hf, config, name="default")`` injects a fresh adapter, makes it the active one and trainable
  (the base model's weights are frozen); ``load_adapter(hf, path, name, is_trainable=False)`` injects one from an
  adapter directory, frozen unless ``is_trainable``.
- ``set_adapter`` / ``enable_adapters`` / ``disable_adapters`` / ``active_adapters`` / ``delete_adapter`` /
  ``get_adapter_state_dict`` act on the injected layers.
- On disk (``save_adapter``) a model with an adapter holds only the active adapter, in PEFT's layout:
  ``adapter_config.json`` (its ``base_model_name_or_path`` names the base model) and ``adapter_model.safetensors``
  (keys ``base_model.model.<module>.lora_A.weight``), which ``peft.PeftModel.from_pretrained`` reads over the base
  model, and sentence-transformers reads where its peft requirement is met.
- ``merged_copy(model)`` returns a deep copy with the active adapters merged into the base weights and the adapter
  layers removed: a plain model any sentence-transformers loads without peft (one more copy of the model in host
  memory while it exists).

Every function needs the ``peft`` package; without it they raise ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN_NAME = "adapter_model.bin"
PEFT_KEY_PREFIX = "base_model.model."  # PEFT's saved keys, as PeftModel.save_pretrained writes them
DEFAULT_ADAPTER_NAME = "default"
INSTALL_HINT = "pip install 'raystx[peft]'"


def require_peft(what: str = "PEFT adapters") -> Any:
    """The ``peft`` module; ``ImportError`` naming the extra when it is not installed."""
    try:
        import peft
        import peft.functional  # noqa: F401 - the public integration API used below
    except ImportError as exc:
        raise ImportError(f"{what} need the peft package, which is not installed: {INSTALL_HINT}") from exc
    return peft


# -- where adapters live -----------------------------------------------------------------------------------
def adapter_host(model: nn.Module) -> nn.Module:
    """The Hugging Face model of ``model``'s first Transformer module (the one adapters are injected into)."""
    from transformers import PreTrainedModel

    for module in model.children():
        hf_model = getattr(module, "auto_model", None)
        if isinstance(hf_model, PreTrainedModel):
            return hf_model
    names = [type(m).__name__ for m in model.children()]
    raise ValueError(
        f"PEFT adapters need a Transformer module (a Hugging Face model); this model's modules are {names}"
    )


def find_adapter_host(model: nn.Module) -> nn.Module | None:
    """``adapter_host(model)`` when that model has adapters, else None (no peft import needed)."""
    for module in model.children():
        hf_model = getattr(module, "auto_model", None)
        if hf_model is not None and has_adapters(hf_model):
            return hf_model
    return None


def has_adapters(hf_model: nn.Module) -> bool:
    """Whether adapters were added to / loaded into ``hf_model`` (and not all deleted or merged since)."""
    return bool(getattr(hf_model, "peft_config", None))


def adapter_names(hf_model: nn.Module) -> list[str]:
    """Names of the adapters on ``hf_model``, in the order they were added."""
    return list(getattr(hf_model, "peft_config", None) or {})


def _tuner_layers(hf_model: nn.Module) -> Iterator[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in hf_model.modules():
        if isinstance(module, BaseTunerLayer):
            yield module


def _require_loaded(hf_model: nn.Module) -> None:
    require_peft()
    if not has_adapters(hf_model):
        raise ValueError(
            "No adapter loaded. Add one with add_adapter(peft_config) or load_adapter(path) first."
        )


def _check_names(hf_model: nn.Module, names: list[str]) -> None:
    missing = [n for n in names if n not in adapter_names(hf_model)]
    if missing:
        raise ValueError(
            f"Adapter(s) {missing} not found; the model's adapters are {adapter_names(hf_model)}"
        )


# -- adding, loading, switching ------------------------------------------------------------------------------
def _inject(hf_model: nn.Module, config: Any, name: str) -> None:
    peft = require_peft()
    if not isinstance(config, peft.PeftConfig):
        raise TypeError(
            f"peft_config must be a peft.PeftConfig (e.g. peft.LoraConfig), got {type(config).__name__}"
        )
    if name in adapter_names(hf_model):
        raise ValueError(f"Adapter with name {name!r} already exists. Please use a different name.")
    previous = dict(getattr(hf_model, "peft_config", None) or {})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        peft.functional.inject_adapter_in_model(config, hf_model, adapter_name=name)
    hf_model.peft_config = {**previous, name: config}


def add_adapter(hf_model: nn.Module, peft_config: Any, adapter_name: str | None = None) -> None:
    """Inject a fresh adapter named ``adapter_name`` (``"default"``) and make it the active, trainable one.

    The base model's parameters are frozen (``requires_grad=False``). ``peft_config`` is copied; the copy's
    ``base_model_name_or_path`` is set to the path the Hugging Face model was loaded from.
    """
    config = copy.deepcopy(peft_config)
    if hasattr(config, "base_model_name_or_path"):
        config.base_model_name_or_path = hf_model.__dict__.get("name_or_path")
    name = adapter_name or DEFAULT_ADAPTER_NAME
    _inject(hf_model, config, name)
    set_adapter(hf_model, name)


def read_adapter_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors`` (or ``adapter_model.bin``) in ``directory``, on the CPU."""
    directory = Path(directory)
    if (directory / ADAPTER_WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / ADAPTER_WEIGHTS_NAME))
    if (directory / ADAPTER_WEIGHTS_BIN_NAME).is_file():
        return torch.load(directory / ADAPTER_WEIGHTS_BIN_NAME, weights_only=True, map_location="cpu")
    raise FileNotFoundError(f"{directory} has {ADAPTER_CONFIG_NAME} but no {ADAPTER_WEIGHTS_NAME}")


def set_adapter_weights(
    hf_model: nn.Module, tensors: dict[str, torch.Tensor], name: str, source: Any
) -> None:
    """Copy saved adapter ``tensors`` (PEFT keys, with or without ``base_model.model.``) into adapter ``name``.

    The keys must be exactly the adapter's: a missing or unexpected tensor raises ``ValueError`` naming ``source``.
    """
    peft = require_peft()
    stripped = {k.removeprefix(PEFT_KEY_PREFIX): v for k, v in tensors.items()}
    expected = set(peft.functional.get_peft_model_state_dict(hf_model, adapter_name=name))
    missing, unexpected = sorted(expected - set(stripped)), sorted(set(stripped) - expected)
    if missing or unexpected:
        raise ValueError(
            f"adapter weights in {source} do not fit adapter {name!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (was it saved from another base model or adapter config?)"
        )
    peft.functional.set_peft_model_state_dict(hf_model, stripped, adapter_name=name)


def load_adapter(
    hf_model: nn.Module,
    path: str | os.PathLike,
    adapter_name: str | None = None,
    is_trainable: bool = False,
) -> None:
    """Inject the adapter saved in the local directory ``path`` (PEFT layout) as ``adapter_name``.

    It becomes the active adapter; its weights are frozen unless ``is_trainable`` (as in sentence-transformers,
    where a loaded adapter is for inference: ``set_adapter(name)`` makes it trainable).
    """
    peft = require_peft()
    directory = Path(path)
    if not (directory / ADAPTER_CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{directory} is not a PEFT adapter directory: it has no {ADAPTER_CONFIG_NAME} "
            f"(an adapter is saved as {ADAPTER_CONFIG_NAME} + {ADAPTER_WEIGHTS_NAME})"
        )
    config = peft.PeftConfig.from_pretrained(str(directory))
    if hasattr(config, "inference_mode"):
        config.inference_mode = not is_trainable
    name = adapter_name or DEFAULT_ADAPTER_NAME
    tensors = read_adapter_weights(directory)
    _inject(hf_model, config, name)
    set_adapter_weights(hf_model, tensors, name, directory)
    set_adapter(hf_model, name)
    if not is_trainable:
        for layer in _tuner_layers(hf_model):
            layer.requires_grad_(False)


def set_adapter(hf_model: nn.Module, adapter_name: str | list[str]) -> None:
    """Make ``adapter_name`` (or several) the active adapter(s), trainable; the others are inactive and frozen."""
    peft = require_peft()
    _require_loaded(hf_model)
    names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
    _check_names(hf_model, names)
    peft.functional.set_adapter(hf_model, adapter_name)


def enable_adapters(hf_model: nn.Module) -> None:
    """Run the forward with the active adapter(s) again (after ``disable_adapters``)."""
    _require_loaded(hf_model)
    for layer in _tuner_layers(hf_model):
        layer.enable_adapters(True)


def disable_adapters(hf_model: nn.Module) -> None:
    """Run the forward with the base model only (the adapters stay attached, frozen)."""
    _require_loaded(hf_model)
    from peft.utils import ModulesToSaveWrapper

    for module in hf_model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            module.enable_adapters(False)
    for layer in _tuner_layers(hf_model):
        layer.enable_adapters(False)


def adapters_enabled(hf_model: nn.Module) -> bool:
    """False after ``disable_adapters`` (the forward is the base model's)."""
    return has_adapters(hf_model) and not all(layer.disable_adapters for layer in _tuner_layers(hf_model))


def active_adapters(hf_model: nn.Module) -> list[str]:
    """Names of the active adapter(s)."""
    _require_loaded(hf_model)
    for layer in _tuner_layers(hf_model):
        active = layer.active_adapter
        return [active] if isinstance(active, str) else list(active)
    return []


def get_adapter_state_dict(
    hf_model: nn.Module, adapter_name: str | None = None, state_dict: dict | None = None
) -> dict[str, torch.Tensor]:
    """The weights of one adapter (default: the first active one), keyed as PEFT keys them without a prefix."""
    peft = require_peft()
    _require_loaded(hf_model)
    name = adapter_name or active_adapters(hf_model)[0]
    _check_names(hf_model, [name])
    return peft.functional.get_peft_model_state_dict(hf_model, state_dict=state_dict, adapter_name=name)


def delete_adapter(hf_model: nn.Module, adapter_names_: str | list[str]) -> None:
    """Remove adapter(s); removing the last one restores the plain base model (no adapter layers left)."""
    peft = require_peft()
    _require_loaded(hf_model)
    names = [adapter_names_] if isinstance(adapter_names_, str) else list(adapter_names_)
    _check_names(hf_model, names)
    if set(names) >= set(adapter_names(hf_model)):
        unload(hf_model, merge=False)
        return
    for name in names:
        prefix = f"{hf_model.peft_config[name].peft_type.value.lower()}_"
        peft.functional.delete_adapter(hf_model, adapter_name=name, prefix=prefix)
        hf_model.peft_config.pop(name, None)


def unload(hf_model: nn.Module, merge: bool) -> None:
    """Replace every adapter layer by its base layer, merging the active adapters into it first if ``merge``
    (and the adapters are enabled); afterwards ``hf_model`` is a plain model without ``peft_config``."""
    require_peft()
    _require_loaded(hf_model)
    names = active_adapters(hf_model)
    merge = merge and adapters_enabled(hf_model)
    prefixes = {f"{c.peft_type.value.lower()}_" for c in hf_model.peft_config.values()}
    targets = [n for n, _ in hf_model.named_modules() if n and not any(p in n for p in prefixes)]
    for key in targets:
        try:
            target = hf_model.get_submodule(key)
        except AttributeError:  # inside a layer replaced above
            continue
        parent_name, _, attr = key.rpartition(".")
        parent = hf_model.get_submodule(parent_name) if parent_name else hf_model
        if hasattr(target, "unload_and_optionally_merge_module"):  # modules_to_save and similar wrappers
            replacement = target.unload_and_optionally_merge_module(
                merge=merge, safe_merge=False, adapter_names=names
            )
        elif hasattr(target, "base_layer") and hasattr(target, "get_base_layer"):
            if merge:
                target.merge(adapter_names=names)
            replacement = target.get_base_layer()
        else:
            continue
        setattr(parent, attr, replacement)
    del hf_model.peft_config


def merged_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose adapter host has the active adapters merged in and no adapter layers."""
    copied = copy.deepcopy(model)
    host = find_adapter_host(copied)
    if host is not None:
        unload(host, merge=True)
    return copied


# -- on disk -------------------------------------------------------------------------------------------------
def save_adapter(hf_model: nn.Module, directory: str | os.PathLike) -> None:
    """Write the active adapter as ``adapter_config.json`` + ``adapter_model.safetensors`` into ``directory``."""
    from safetensors.torch import save_file

    names = active_adapters(hf_model)
    if len(names) != 1:
        raise ValueError(
            f"Saving needs exactly one active adapter, the model has {names}: set_adapter(name) first"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = get_adapter_state_dict(hf_model, names[0])
    tensors = {PEFT_KEY_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(tensors, str(directory / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    hf_model.peft_config[names[0]].save_pretrained(str(directory))


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG_NAME).is_file()


def adapter_base_path(path: str | os.PathLike) -> str:
    """Where the base model of the adapter saved in ``path`` is: ``path`` itself when it also holds a full model
    (``config.json``), else the ``base_model_name_or_path`` of its ``adapter_config.json``."""
    path = Path(path)
    if (path / "config.json").is_file():
        return str(path)
    config = json.loads((path / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{path / ADAPTER_CONFIG_NAME} names no base_model_name_or_path: the base model of this adapter is "
            "unknown; load the base model and call load_adapter(path) on it"
        )
    if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().exists():
        raise FileNotFoundError(
            f"the adapter in {path} was trained on the base model {base!r} (adapter_config.json "
            "base_model_name_or_path), which does not exist here; put the base model there or edit that key"
        )
    return base


def restore_adapter_checkpoint(model: nn.Module, model_dir: str | os.PathLike) -> bool:
    """Copy a checkpoint's weights into ``model`` in place when it has adapters: the adapter from the adapter
    files, every other module with parameters from its own folder; the base model is never read (its weights are
    frozen, and its path may not exist on this node). False when ``model`` has no adapters (nothing done)."""
    host = find_adapter_host(model)
    if host is None:
        return False
    from raystx.models._io import read_json
    from raystx.models.registry import load_module

    root = Path(model_dir)
    entries = sorted(read_json(root / "modules.json") or [], key=lambda e: e.get("idx", 0))
    modules = dict(model.named_children())
    for entry in entries:
        name, sub = str(entry.get("name")), entry.get("path", "")
        module = modules.get(name)
        if module is None:
            raise ValueError(f"{root} holds module {name!r}, which the model does not have")
        if getattr(module, "auto_model", None) is host:
            if not is_adapter_dir(root / sub):
                raise ValueError(
                    f"{root / sub} holds no PEFT adapter ({ADAPTER_CONFIG_NAME}) but the model has adapter(s) "
                    f"{adapter_names(host)}: it was saved from a model without them"
                )
            set_adapter_weights(host, read_adapter_weights(root / sub), active_adapters(host)[0], root / sub)
        elif any(True for _ in module.parameters()):
            loaded = load_module(type(module), root, sub, {})
            module.load_state_dict(loaded.state_dict())
    return True


# -- from a config file --------------------------------------------------------------------------------------
# PEFT config fields that raystx sets itself (a YAML adapter section must not).
_RESERVED_FIELDS = ("peft_type", "base_model_name_or_path", "revision", "inference_mode", "peft_version")


def injectable_types() -> list[str]:
    """Lower-case names of the PEFT methods that inject into a model in place (``lora``, ``loha``, ``ia3``, ...)."""
    peft = require_peft()
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    names = []
    for peft_type, config_cls in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        tuner = PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type)
        if tuner is None or getattr(tuner, "uses_shared_state", False):
            continue
        if issubclass(config_cls, peft.PromptLearningConfig) or peft_type.value in (
            "ADAPTION_PROMPT",
            "SHADOW",
        ):
            continue
        names.append(str(peft_type.value).lower())
    return sorted(names)


def peft_config_from_spec(adapter_type: str, fields: dict[str, Any], where: str = "model.adapter") -> Any:
    """A ``peft.PeftConfig`` from a config section: ``adapter_type`` (``lora``, ...) and that config's fields.

    ``ValueError`` names ``where``, the bad key and the fix: an unknown type (lists the supported ones), an unknown
    field (lists the valid ones), a reserved field, or a value the PEFT config rejects; ``ImportError`` naming the
    extra when peft is not installed.
    """
    import dataclasses

    require_peft(f"{where} (PEFT adapters)")
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    supported = injectable_types()
    name = str(adapter_type).lower()
    if name not in supported:
        raise ValueError(
            f"{where}.type {adapter_type!r} is not a PEFT method raystx can add; use one of {supported}"
        )
    config_cls = next(cls for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items() if str(t.value).lower() == name)
    valid = {f.name for f in dataclasses.fields(config_cls) if f.init} - set(_RESERVED_FIELDS)
    reserved = sorted(set(fields) & set(_RESERVED_FIELDS))
    if reserved:
        raise ValueError(f"{where}.{reserved[0]} is set by raystx; remove it from the config")
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]} is not a field of peft.{config_cls.__name__}; its fields are {sorted(valid)}"
        )
    try:
        return config_cls(**fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: peft.{config_cls.__name__} rejects {fields}: {exc}") from None
