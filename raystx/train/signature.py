"""Check keyword arguments from a config against a class constructor's signature, before building anything.

``check_kwargs("loss CoSENTLoss", CoSENTLoss, {"scale": "big"}, supplied=("model",))`` raises ``ConfigError``
naming the class, the argument and its expected type; an unknown argument fails listing the accepted ones.
Values are returned converted to the annotated types (``20`` -> ``20.0`` for a ``float``). Annotations that
cannot be resolved or turned into a validator are not type-checked (the name still is).
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from raystx.config import ConfigError

_ARBITRARY = ConfigDict(arbitrary_types_allowed=True)


def _annotation(cls: type, param: inspect.Parameter) -> Any:
    """The parameter's annotation as a type (string annotations evaluated in the class's module)."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if isinstance(ann, str):
        namespace = vars(sys.modules.get(cls.__module__, typing))
        try:
            ann = eval(ann, dict(namespace))  # noqa: S307 - an annotation of a raystx class
        except Exception:  # noqa: BLE001 - e.g. a name imported under TYPE_CHECKING only
            return None
    return None if ann is Any else ann


def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=_ARBITRARY)
    except Exception:  # noqa: BLE001 - pydantic cannot build a validator for every annotation
        try:
            return TypeAdapter(annotation)
        except Exception:  # noqa: BLE001
            return None


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def check_kwargs(
    owner: str, cls: type, kwargs: dict[str, Any], supplied: Iterable[str] = (), types: bool = True
) -> dict[str, Any]:
    """``kwargs`` checked against ``cls.__init__``; ``supplied`` names arguments raystx passes itself (the
    model, a wrapped loss, evaluator columns), which the config must not repeat; ``types=False`` checks the
    names only. Returns the values converted to the annotated types."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    supplied = set(supplied)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n: p
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    accepted = sorted(n for n in named if n not in supplied)
    problems: list[str] = []
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in supplied:
            problems.append(f"{key!r} is set by raystx itself; remove it from kwargs")
            continue
        if key not in named:
            if not takes_any:
                problems.append(f"unknown argument {key!r}; {cls.__name__} accepts {accepted}")
            out[key] = value
            continue
        annotation = _annotation(cls, named[key]) if types else None
        adapter = _adapter(annotation) if annotation is not None else None
        if adapter is None:
            out[key] = value
            continue
        try:
            out[key] = adapter.validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            problems.append(f"{key}={value!r} is not a {_type_name(annotation)} ({reason})")
    if problems:
        raise ConfigError(f"{owner}: " + "; ".join(problems))
    return out
