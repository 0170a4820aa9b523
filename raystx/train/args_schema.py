"""The ``args`` section of a config as a typed pydantic model, generated from the fields and annotations of
``SentenceTransformerTrainingArguments`` (so the two cannot drift), plus numeric ranges.

``TrainingArgsSection.model_validate({...})`` checks every given key against its field's type (``"eight"`` for
an int, ``[1]`` for a float fail naming the key and the type) and range; unknown keys fail listing them.
``given(section)`` is the dict of the keys the user set, converted to their field types.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from raystx.train.args import SentenceTransformerTrainingArguments

RANGES: dict[str, dict[str, float]] = {
    "num_train_epochs": {"ge": 0},
    "per_device_train_batch_size": {"gt": 0},
    "per_device_eval_batch_size": {"gt": 0},
    "gradient_accumulation_steps": {"ge": 1},
    "learning_rate": {"ge": 0},
    "weight_decay": {"ge": 0},
    "adam_epsilon": {"ge": 0},
    "max_grad_norm": {"ge": 0},
    "warmup_ratio": {"ge": 0, "lt": 1},
    "warmup_steps": {"ge": 0},
    "dataloader_prefetch_batches": {"ge": 0},
}
"""Field -> pydantic bounds (``gt``/``ge``/``lt``) applied on top of the field's type."""


class _ArgsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown training argument(s) {unknown}; see SentenceTransformerTrainingArguments for "
                    "valid fields"
                )
        return value


def _field_spec(f: dataclasses.Field, annotation: Any) -> tuple[Any, Any]:
    bounds = RANGES.get(f.name)
    if bounds:
        annotation = Annotated[annotation, Field(**bounds)]
    if f.default is not dataclasses.MISSING:
        return annotation, f.default
    return annotation, Field(default_factory=f.default_factory)  # type: ignore[arg-type]


def _build() -> type[BaseModel]:
    hints = typing.get_type_hints(SentenceTransformerTrainingArguments)
    fields = {
        f.name: _field_spec(f, hints[f.name])
        for f in dataclasses.fields(SentenceTransformerTrainingArguments)
    }
    return create_model("TrainingArgsSection", __base__=_ArgsBase, **fields)  # type: ignore[call-overload]


TrainingArgsSection = _build()


def given(section: BaseModel) -> dict[str, Any]:
    """The keys the user set (not the defaults), with values converted to the fields' types."""
    return section.model_dump(exclude_unset=True)
