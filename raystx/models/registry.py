"""Map the class paths found in ``modules.json`` (and a Router's ``router_config.json``) to module classes.

Accepted without question: sentence-transformers 6.x paths (``sentence_transformers.base.modules.transformer.
Transformer``), legacy ones (``sentence_transformers.models.Transformer``) and raystx's own
(``raystx.models.Transformer``). The class is chosen by its final name; nothing is imported from such a path.

Any other path names custom code. It is imported only when the caller passes ``trust_remote_code=True``: first
as a module on ``sys.path``, else from a ``<module path>.py`` file inside the model directory (the layout
sentence-transformers uses for custom modules shipped with a model). Without the flag loading stops with an
error naming the module and the flag.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

TRUSTED_PREFIXES = ("sentence_transformers.", "raystx.")


def module_classes() -> dict[str, type[nn.Module]]:
    """Final class name -> raystx class, for every module type raystx implements."""
    from raystx.models.dense import Dense
    from raystx.models.legacy import LEGACY_MODULES
    from raystx.models.normalize import Normalize
    from raystx.models.pooling import Pooling
    from raystx.models.router import Router
    from raystx.models.static_embedding import StaticEmbedding
    from raystx.models.transformer import Transformer

    classes: dict[str, type[nn.Module]] = {
        cls.__name__: cls for cls in (Transformer, Pooling, Normalize, Dense, StaticEmbedding, Router)
    }
    classes["Asym"] = Router  # sentence-transformers' old name of Router
    classes.update({cls.__name__: cls for cls in LEGACY_MODULES})
    return classes


class CustomModuleError(ValueError):
    """A ``modules.json`` entry names code outside raystx and ``trust_remote_code`` was not given."""


def module_class_for(
    class_ref: str, trust_remote_code: bool = False, model_dir: str | os.PathLike | None = None
) -> type[nn.Module]:
    """The class implementing the module named by ``class_ref``.

    Raises ``CustomModuleError`` for a custom class path without ``trust_remote_code``, ``ValueError`` for a
    sentence-transformers module type raystx does not implement.
    """
    name = class_ref.rsplit(".", 1)[-1]
    classes = module_classes()
    if class_ref.startswith(TRUSTED_PREFIXES):
        if name in classes:
            return classes[name]
        raise ValueError(
            f"Unsupported module type {class_ref!r} in modules.json; raystx supports {sorted(classes)} "
            "from sentence_transformers or raystx"
        )
    if not trust_remote_code:
        raise CustomModuleError(
            f"modules.json names the custom module {class_ref!r}, whose code is not part of raystx. Loading it "
            "runs that code: pass trust_remote_code=True (SentenceTransformer(path, trust_remote_code=True)) "
            "only if you trust its source."
        )
    return _import_custom(class_ref, model_dir)


def _import_custom(class_ref: str, model_dir: str | os.PathLike | None) -> type[nn.Module]:
    module_path, _, name = class_ref.rpartition(".")
    if not module_path:
        raise ValueError(f"Custom module type {class_ref!r} must be 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        source = Path(model_dir, *module_path.split(".")).with_suffix(".py") if model_dir else None
        if source is None or not source.is_file():
            raise ImportError(
                f"Cannot import custom module {class_ref!r}: {module_path!r} is neither importable nor a file "
                f"{module_path.replace('.', '/')}.py in the model directory"
            ) from None
        unique = f"raystx_custom_{abs(hash(str(source.resolve())))}_{module_path.replace('.', '_')}"
        spec = importlib.util.spec_from_file_location(unique, source)
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
        _pickle_by_value(module)  # Ray workers cannot import a module that lives in a model directory
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        raise ImportError(f"Custom module {class_ref!r}: {module_path!r} has no class {name!r}")
    if not getattr(cls, "st_class_ref", ""):
        cls.st_class_ref = class_ref  # saving writes the same type back to modules.json
    return cls


def _pickle_by_value(module: Any) -> None:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - Ray brings cloudpickle
        return
    cloudpickle.register_pickle_by_value(module)


def load_module(cls: type[nn.Module], root: Path, sub: str, loader_kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate ``cls`` from ``root/sub``: raystx classes get the loader options, custom ones a path."""
    module_dir = root / sub if sub else root
    if getattr(cls, "__module__", "").startswith("raystx."):
        return cls.load(module_dir, **loader_kwargs)
    loader = getattr(cls, "load", None)
    if loader is None:
        return cls()
    try:  # sentence-transformers 6.x custom modules: load(model_name_or_path, subfolder=..., ...)
        return loader(str(root), subfolder=sub, **_accepted(loader, loader_kwargs))
    except TypeError:
        return loader(str(module_dir))


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}
