"""Router (old name ``Asym``): sends each batch through one of several module pipelines, chosen by task.

An asymmetric model has e.g. a ``query`` and a ``document`` route. ``encode_query``/``encode_document`` (or
``encode(task=...)``) pick the route; in training, the ``router_mapping`` argument maps dataset columns to
routes. Inputs may also be dicts ``{route: text}`` (the old ``Asym`` style).

On disk (sentence-transformers format): ``router_config.json`` = ``{"types": {id: class path}, "structure":
{route: [id, ...]}, "parameters": {"default_route", "allow_empty_key", "route_mappings"}}`` and one directory per
module id (``{route}_{position}_{ClassName}``); a module shared by two routes is stored once. Old ``Asym``
directories hold the same JSON as ``config.json``. ``route_mappings`` keys ``(task, modality)`` are written as
their Python ``repr`` strings.
"""

from __future__ import annotations

import ast
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from raystx.models._io import read_json, write_json
from raystx.models.module import ModelModule

TEXT = "text"
RouteKey = tuple[Any, Any]


class Router(ModelModule):
    """Route features through ``sub_modules[route]`` (each a list of modules applied in order).

    Args:
        sub_modules: route name -> list of modules; the first module of each route tokenizes.
        default_route: route used when no task is given (default: the first route if ``allow_empty_key``).
        allow_empty_key: allow encoding without a task (falls back to ``default_route``).
        route_mappings: ``(task, modality) -> route``; ``None`` is a wildcard. raystx inputs are text, so the
            modality is ``"text"``.
    """

    config_file_name: ClassVar[str] = "router_config.json"
    st_class_ref: ClassVar[str] = "sentence_transformers.base.modules.router.Router"

    def __init__(
        self,
        sub_modules: dict[str, Sequence[nn.Module]],
        default_route: str | None = None,
        allow_empty_key: bool = True,
        route_mappings: dict[RouteKey, str] | None = None,
    ) -> None:
        super().__init__()
        if not sub_modules:
            raise ValueError("Router needs at least one route in sub_modules")
        if default_route is not None and default_route not in sub_modules:
            raise ValueError(f"default_route {default_route!r} is not a route of {list(sub_modules)}")
        for target in (route_mappings or {}).values():
            if target not in sub_modules:
                raise ValueError(f"route_mappings maps to {target!r}, not a route of {list(sub_modules)}")
        self.sub_modules = nn.ModuleDict({name: nn.Sequential(*mods) for name, mods in sub_modules.items()})
        if allow_empty_key and default_route is None:
            default_route = next(iter(sub_modules))
        self.default_route = default_route
        self.allow_empty_key = allow_empty_key
        self.route_mappings: dict[RouteKey, str] = {
            (task, tuple(sorted(mod)) if isinstance(mod, (tuple, list)) else mod): route
            for (task, mod), route in (route_mappings or {}).items()
        }

    @classmethod
    def for_query_document(
        cls,
        query_modules: Sequence[nn.Module],
        document_modules: Sequence[nn.Module],
        default_route: str | None = "document",
        allow_empty_key: bool = True,
    ) -> Router:
        """A two-route model: ``query`` and ``document`` (the default)."""
        return cls(
            {"query": list(query_modules), "document": list(document_modules)},
            default_route=default_route,
            allow_empty_key=allow_empty_key,
        )

    # -- routing -------------------------------------------------------------------------------------------
    def resolve_route(self, task: str | None = None) -> str:
        """The route for ``task``: mappings (exact, task-only, modality-only, catch-all), a route of that name,
        then ``default_route``; raises ValueError naming the routes when none applies."""
        for key in ((task, TEXT), (task, None), (None, TEXT), (None, None)):
            if key in self.route_mappings:
                return self.route_mappings[key]
        if task is not None and task in self.sub_modules:
            return task
        if TEXT in self.sub_modules:
            return TEXT
        if task is None and self.default_route is not None:
            return self.default_route
        raise ValueError(
            f"Router: no route for task={task!r}; routes are {list(self.sub_modules)}. Pass task= to encode "
            "(encode_query/encode_document do), set router_mapping in the training arguments, or give the "
            "Router a default_route."
        )

    def tokenize(
        self, texts: list[Any], prompt: str | None = None, task: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Tokenize with the first module of the chosen route; ``task``/``modality`` ride along in the features.

        Inputs given as ``{route: text}`` dicts (old ``Asym`` style) choose the route themselves.
        """
        texts = list(texts)
        if texts and isinstance(texts[0], dict) and task is None:
            keys = {key for item in texts for key in item}
            if len(keys) != 1:
                raise ValueError(
                    f"Router: dict inputs in one batch must share one task key, got {sorted(keys)}"
                )
            task = keys.pop()
            texts = [item[task] for item in texts]
        route = self.resolve_route(task)
        features = self.sub_modules[route][0].tokenize(texts, prompt=prompt, **kwargs)
        features["task"] = task
        features["modality"] = TEXT
        return features

    preprocess = tokenize

    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs: Any) -> dict[str, Any]:
        route = self.resolve_route(task if task is not None else features.get("task"))
        for module in self.sub_modules[route]:
            features = module(features)
        return features

    def with_private_tokenizer(self) -> Router:
        """A Router sharing every parameter but owning copies of the tokenizers (for a tokenizing thread)."""
        clone = copy.copy(self)
        clone.__dict__["_modules"] = dict(self._modules)
        routes = {}
        for name, seq in self.sub_modules.items():
            first = copy.copy(seq[0])
            if hasattr(first, "tokenizer"):
                first.__dict__["tokenizer"] = copy.deepcopy(seq[0].tokenizer)
            routes[name] = nn.Sequential(first, *list(seq)[1:])
        clone._modules["sub_modules"] = nn.ModuleDict(routes)
        return clone

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        for seq in self.sub_modules.values():
            tok = getattr(seq[0], "tokenizer", None)
            if tok is not None:
                return tok
        return None

    @property
    def max_seq_length(self) -> int | None:
        lengths = {getattr(seq[0], "max_seq_length", None) for seq in self.sub_modules.values()} - {None}
        return max(lengths) if lengths else None

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        for seq in self.sub_modules.values():
            if hasattr(seq[0], "max_seq_length"):
                seq[0].max_seq_length = value

    def get_sentence_embedding_dimension(self) -> int | None:
        """The embedding width of the first route that knows it."""
        for seq in self.sub_modules.values():
            for module in reversed(list(seq)):
                getter = getattr(module, "get_sentence_embedding_dimension", None) or getattr(
                    module, "get_word_embedding_dimension", None
                )
                if callable(getter):
                    return getter()
        return None

    get_embedding_dimension = get_sentence_embedding_dimension

    # -- save / load ---------------------------------------------------------------------------------------
    def get_config_dict(self) -> dict[str, Any]:
        return {
            "default_route": self.default_route,
            "allow_empty_key": self.allow_empty_key,
            "route_mappings": {repr(key): route for key, route in self.route_mappings.items()},
        }

    def save(self, output_path: str | os.PathLike) -> None:
        root = Path(output_path)
        ids: dict[int, str] = {}
        types: dict[str, str] = {}
        structure: dict[str, list[str]] = {}
        for route, seq in self.sub_modules.items():
            structure[route] = []
            for position, module in enumerate(seq):
                if id(module) not in ids:
                    module_id = f"{route}_{position}_{type(module).__name__}"
                    ids[id(module)] = module_id
                    types[module_id] = (
                        getattr(module, "st_class_ref", "")
                        or f"{type(module).__module__}.{type(module).__name__}"
                    )
                    (root / module_id).mkdir(parents=True, exist_ok=True)
                    module.save(str(root / module_id))
                structure[route].append(ids[id(module)])
        config = {"types": types, "structure": structure, "parameters": self.get_config_dict()}
        write_json(root / self.config_file_name, config, indent=4)

    @classmethod
    def load(cls, input_path: str | os.PathLike, **kwargs: Any) -> Router:
        from raystx.models.registry import load_module, module_class_for

        root = Path(input_path)
        config = read_json(root / cls.config_file_name) or read_json(root / "config.json")
        if not isinstance(config, dict) or "types" not in config or "structure" not in config:
            raise ValueError(
                f"{root}: no router_config.json (or old Asym config.json) with types and structure"
            )
        trust = bool(kwargs.get("trust_remote_code", False))
        modules: dict[str, nn.Module] = {}
        for module_id, class_ref in config["types"].items():
            parts = Path(module_id).parts
            if Path(module_id).is_absolute() or ".." in parts or len(parts) != 1:
                raise ValueError(f"{root}: router module id {module_id!r} must be a plain directory name")
            module_cls = module_class_for(class_ref, trust, root)
            modules[module_id] = load_module(module_cls, root, module_id, kwargs)
        sub_modules = {route: [modules[i] for i in ids] for route, ids in config["structure"].items()}
        params = dict(config.get("parameters") or {})
        mappings = {}
        for key, route in (params.pop("route_mappings", None) or {}).items():
            mappings[tuple(ast.literal_eval(key))] = route
        accepted = {k: v for k, v in params.items() if k in ("default_route", "allow_empty_key")}
        return cls(sub_modules, route_mappings=mappings, **accepted)


Asym = Router


def check_router_mapping(model: nn.Module, router_mapping: dict[str, Any] | None) -> None:
    """Driver-side check before training: a model with a Router needs ``router_mapping``, and every route it
    names must exist. Raises ValueError naming the column and the Router's routes."""
    routers = [m for m in model.children() if isinstance(m, Router)]
    if not routers:
        return
    if not router_mapping:
        raise ValueError(
            "The model has a Router module but the training arguments have no router_mapping, so every column "
            "would go to the default route. Set router_mapping to map columns to routes, e.g. "
            "{'question': 'query', 'answer': 'document'} (or {dataset: {column: route}})."
        )
    pairs: list[tuple[str, str]] = []
    for key, value in router_mapping.items():
        if isinstance(value, dict):  # {dataset: {column: route}}
            pairs.extend((f"{key}.{column}", route) for column, route in value.items())
        else:
            pairs.append((key, value))
    for column, route in pairs:
        for router in routers:
            try:
                router.resolve_route(route)
            except ValueError:
                raise ValueError(
                    f"router_mapping maps column {column!r} to {route!r}, which is not a route of the model's "
                    f"Router (routes: {list(router.sub_modules)})"
                ) from None
