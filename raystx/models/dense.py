"""Dense: a linear layer plus activation on the sentence embedding (projection / dimension change).

The activation is stored in ``config.json`` by its dotted class path (e.g.
``torch.nn.modules.activation.Tanh``); on load, only ``torch.nn`` module classes are accepted unless
``trust_remote_code=True``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from typing import Any, ClassVar

from torch import Tensor, nn

from raystx.models._io import load_state_dict, save_state_dict
from raystx.models.module import ModelModule

logger = logging.getLogger(__name__)


def dotted_name(obj: Any) -> str:
    """``module.Class`` path of an object's class (how sentence-transformers names activation functions)."""
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def activation_from_name(name: str, trust_remote_code: bool = False) -> nn.Module:
    """Instantiate the activation class named ``name``; refuses non-torch classes unless trusted."""
    if not trust_remote_code and not name.startswith("torch."):
        raise ValueError(
            f"Refusing to import activation function {name!r}: only torch.* classes load without trust_remote_code=True"
        )
    module_name, _, attr = name.rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    if not trust_remote_code and not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ValueError(f"Activation function {name!r} is not a torch.nn.Module class")
    return cls() if inspect.isclass(cls) else cls


class Dense(ModelModule):
    """``features[out] = activation(linear(features[in]))`` (+ the input, or its projection, if ``use_residual``).

    Args:
        in_features / out_features / bias: shape of the ``nn.Linear``.
        activation_function: an ``nn.Module`` (default ``nn.Tanh()``; ``None`` means identity).
        init_weight / init_bias: optional initial values of the linear layer.
        module_input_name / module_output_name: feature keys read and written (default ``sentence_embedding``).
        use_residual: add a residual connection (projected without bias when the widths differ).
    """

    config_keys: ClassVar[list[str]] = [
        "in_features",
        "out_features",
        "bias",
        "activation_function",
        "module_input_name",
        "module_output_name",
    ]
    st_class_ref: ClassVar[str] = "sentence_transformers.base.modules.dense.Dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_function: nn.Module | None = nn.Tanh(),  # noqa: B008 - same default as sentence-transformers
        init_weight: Tensor | None = None,
        init_bias: Tensor | None = None,
        module_input_name: str = "sentence_embedding",
        module_output_name: str | None = None,
        use_residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.activation_function = nn.Identity() if activation_function is None else activation_function
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name or module_input_name
        self.use_residual = use_residual
        if use_residual and in_features != out_features:
            self.residual = nn.Linear(in_features, out_features, bias=False)
        if init_weight is not None:
            self.linear.weight = nn.Parameter(init_weight)
        if init_bias is not None and bias:
            self.linear.bias = nn.Parameter(init_bias)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features[self.module_input_name]
        y = self.activation_function(self.linear(x))
        if self.use_residual:
            y = y + (x if self.in_features == self.out_features else self.residual(x))
        features[self.module_output_name] = y
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.out_features

    get_embedding_dimension = get_sentence_embedding_dimension

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["activation_function"] = dotted_name(self.activation_function)
        if self.use_residual:
            config["use_residual"] = True
        return config

    def save(self, output_path: str | os.PathLike) -> None:
        self.save_config(output_path)
        save_state_dict(self, output_path)

    @classmethod
    def load(cls, input_path: str | os.PathLike, trust_remote_code: bool = False, **kwargs: Any) -> Dense:
        config = cls.load_config(input_path)
        name = config.pop("activation_function", None)
        if name is not None:
            try:
                config["activation_function"] = activation_from_name(name, trust_remote_code)
            except ValueError as exc:
                logger.warning("%s; falling back to Tanh", exc)
        accepted = set(inspect.signature(cls).parameters)
        module = cls(**{k: v for k, v in config.items() if k in accepted})
        module.load_state_dict(load_state_dict(input_path))
        return module
