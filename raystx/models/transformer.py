"""Transformer: any Hugging Face encoder (AutoModel + AutoTokenizer) producing per-token embeddings.

Files written into a module directory: the Hugging Face model (``config.json``, ``model.safetensors``),
the tokenizer files (with ``model_max_length`` = ``max_seq_length``) and ``sentence_bert_config.json``
(max_seq_length, do_lower_case and the sentence-transformers 6.x text-modality keys).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from raystx.models._io import read_json, write_json
from raystx.models.adapters import adapter_base_path, has_adapters, is_adapter_dir, load_adapter, save_adapter
from raystx.models.module import ModelModule

# sentence-transformers reads the first of these that exists (older versions named it per architecture)
CONFIG_FILE_NAMES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# keys sentence-transformers 6.x writes for a text encoder; written so that it needs no inference on load
ST6_TEXT_KEYS = {
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
_KWARG_SECTIONS = {
    "model_kwargs": ("model_kwargs", "model_args"),
    "tokenizer_kwargs": ("tokenizer_kwargs", "processor_kwargs", "tokenizer_args"),
    "config_kwargs": ("config_kwargs", "config_args"),
}


def _auto_model_class(config: Any) -> Any:
    """AutoModel, except the encoder-only classes for encoder-decoder families (T5)."""
    import transformers

    encoder_only = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
    name = encoder_only.get(getattr(config, "model_type", ""))
    return getattr(transformers, name) if name else transformers.AutoModel


_PROCESSING_SECTIONS = ("common", "text", "audio", "image", "video", "chat_template")


def _check_processing_kwargs(value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """A copy of sentence-transformers-style ``processing_kwargs``; unknown sections are an error."""
    value = {k: dict(v or {}) for k, v in (value or {}).items()}
    unknown = sorted(set(value) - set(_PROCESSING_SECTIONS))
    if unknown:
        raise ValueError(
            f"processing_kwargs has unknown keys {unknown}: its keys are {list(_PROCESSING_SECTIONS)}, each "
            'holding tokenizer call arguments, e.g. {"text": {"padding_side": "left"}}'
        )
    return value


# Set by ``empty_weights()``: Transformers built in this context read their config and tokenizer but no weights.
_EMPTY_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("raystx_empty_weights", default=False)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Within this context, ``Transformer(path)`` builds its Hugging Face model from the saved config with its
    parameters on the meta device (accelerate's ``init_empty_weights``: buffers stay real) and reads no weights
    file. For a driver that never needs the weights (FSDP workers read them; ``raystx.train.fsdp_ship``). Models
    with an adapter, ``model_kwargs`` or remote code load as usual."""
    token = _EMPTY_WEIGHTS.set(True)
    try:
        yield
    finally:
        _EMPTY_WEIGHTS.reset(token)


def _empty_model(model_class: Any, config: Any) -> Any:
    """``model_class`` from ``config`` with meta parameters and real buffers, in eval mode as ``from_pretrained``
    leaves it."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = model_class.from_config(config)
    return model.eval()


def save_config_only(auto_model: Any, output_path: Path) -> None:
    """What ``save_pretrained`` writes besides the weights, for a model whose weights are written elsewhere:
    ``config.json`` with the model's dtype and architecture (and the generation config of a generating model)."""
    output_path.mkdir(parents=True, exist_ok=True)
    auto_model.config.dtype = str(auto_model.dtype).split(".")[1]
    auto_model.config.architectures = [type(auto_model).__name__.removeprefix("FSDP")]
    auto_model.config.save_pretrained(str(output_path))
    if auto_model.can_generate():
        auto_model.generation_config.save_pretrained(str(output_path))


class Transformer(ModelModule):
    """A Hugging Face encoder. ``tokenize`` turns texts into model inputs; ``forward`` adds ``token_embeddings``.

    Args:
        model_name_or_path: a local Hugging Face model directory (or a Hub id when online).
        max_seq_length: truncation length; default: the tokenizer's ``model_max_length`` capped at the model's
            ``max_position_embeddings``.
        do_lower_case: lower-case texts before tokenizing (regardless of the tokenizer).
        model_kwargs / tokenizer_kwargs / config_kwargs (aliases ``model_args``, ``tokenizer_args``,
            ``config_args``): passed to ``AutoModel`` / ``AutoTokenizer`` / ``AutoConfig.from_pretrained``.
        trust_remote_code: allow custom modelling code from the model repository (off by default).
        cache_dir: Hugging Face cache directory.
        tokenizer_name_or_path: load the tokenizer from elsewhere.
        processing_kwargs: sentence-transformers 6.x keyword arguments for *calling* the tokenizer, by modality:
            ``{"common": {...}, "text": {...}}`` (text over common over raystx's defaults), e.g.
            ``{"text": {"padding_side": "left"}}``; saved in and loaded from ``sentence_bert_config.json``.

    Decoder embedders: the tokenizer decides whether an EOS token ends every text (Qwen3-Embedding's tokenizer
    appends ``<|endoftext|>`` in its post-processor; Llama/Mistral/Gemma-style tokenizers do it with
    ``tokenizer_kwargs={"add_eos_token": True, "add_bos_token": True}``, which transformers writes into the saved
    ``tokenizer.json``), and ``tokenizer_kwargs={"padding_side": "left"}`` (or ``padding_side``) sets the padding
    side, saved in ``tokenizer_config.json``. Both come back when sentence-transformers loads the saved directory.
    """

    st_class_ref: ClassVar[str] = "sentence_transformers.base.modules.transformer.Transformer"
    config_file_name: ClassVar[str] = "sentence_bert_config.json"
    save_in_root: ClassVar[bool] = True
    # False on the FSDP export's weightless copy: ``save`` writes the config, the export streams the weights
    save_weights: ClassVar[bool] = True

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        max_seq_length: int | None = None,
        model_args: dict[str, Any] | None = None,
        tokenizer_args: dict[str, Any] | None = None,
        config_args: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        do_lower_case: bool = False,
        tokenizer_name_or_path: str | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        processing_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoTokenizer

        path = str(model_name_or_path)
        model_kwargs = {**(model_args or {}), **(model_kwargs or {})}
        tokenizer_kwargs = {**(tokenizer_args or {}), **(tokenizer_kwargs or {})}
        config_kwargs = {**(config_args or {}), **(config_kwargs or {})}
        common = {"trust_remote_code": trust_remote_code, "cache_dir": cache_dir}

        # A directory holding a PEFT adapter (raystx.models.adapters) loads its base model, then the adapter.
        adapter_dir = path if is_adapter_dir(path) else None
        base_path = adapter_base_path(path) if adapter_dir else path
        config = AutoConfig.from_pretrained(base_path, **common, **config_kwargs)
        if _EMPTY_WEIGHTS.get() and not (adapter_dir or model_kwargs or trust_remote_code):
            self.auto_model = _empty_model(_auto_model_class(config), config)
        else:
            self.auto_model = _auto_model_class(config).from_pretrained(
                base_path, config=config, **common, **model_kwargs
            )
        if adapter_dir:
            load_adapter(self.auto_model, adapter_dir)
        explicit_max_length = "model_max_length" in tokenizer_kwargs
        if max_seq_length is not None and not explicit_max_length:
            tokenizer_kwargs["model_max_length"] = max_seq_length
        self.tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_name_or_path or path, **common, **tokenizer_kwargs
        )
        if max_seq_length is None:
            max_seq_length = self.tokenizer.model_max_length
            positions = getattr(self._text_config, "max_position_embeddings", None)
            if not explicit_max_length and isinstance(positions, int) and positions > 0:
                max_seq_length = min(max_seq_length, positions)
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case
        forward_params = inspect.signature(self.auto_model.forward).parameters
        self.model_input_names = [n for n in MODEL_INPUT_NAMES if n in forward_params]
        # decoders would fill a KV cache that an embedding forward never reads
        self._call_kwargs = {"use_cache": False} if "use_cache" in forward_params else {}
        self._prompt_lengths: dict[str, int] = {}
        self.processing_kwargs = _check_processing_kwargs(processing_kwargs)
        # Skip padding in the encoder where the architecture allows it (``raystx.models.packed``); set
        # ``packed = False`` (or RAYSTX_PACKED=0) to run the Hugging Face forward unchanged.
        self.packed = True
        self._packed_ok: Any = None  # the packed forward function, False when unsupported, None: not checked

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def _text_config(self) -> Any:
        config = self.auto_model.config
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    @property
    def max_seq_length(self) -> int | None:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self._max_seq_length = None if value is None else int(value)
        if value is not None:
            self.tokenizer.model_max_length = int(value)

    @property
    def padding_side(self) -> str:
        """The side texts are padded on: ``processing_kwargs`` (text, then common), else the tokenizer's."""
        for section in ("text", "common"):
            side = (self.processing_kwargs.get(section) or {}).get("padding_side")
            if side is not None:
                return str(side)
        return str(self.tokenizer.padding_side)

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        if value not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {value!r}")
        for section in ("text", "common"):
            (self.processing_kwargs.get(section) or {}).pop("padding_side", None)
        self.tokenizer.padding_side = value

    def get_word_embedding_dimension(self) -> int:
        return int(self._text_config.hidden_size)

    get_embedding_dimension = get_word_embedding_dimension

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute activations in backward to save memory (non-reentrant by default)."""
        kwargs = gradient_checkpointing_kwargs or {"use_reentrant": False}
        if hasattr(self.auto_model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            self.auto_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.auto_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    # -- tokenization --------------------------------------------------------------------------------------
    def _prepare(self, texts: list[Any], prompt: str | None) -> tuple[list[str], list[str] | None]:
        firsts: list[str] = []
        seconds: list[str] | None = None
        for text in texts:
            if isinstance(text, (tuple, list)):
                seconds = [] if seconds is None else seconds
                firsts.append(str(text[0]))
                seconds.append(str(text[1]))
            else:
                firsts.append(str(text))
        if seconds is not None and len(seconds) != len(firsts):
            raise ValueError("Mixed single texts and text pairs in one batch")
        if prompt:
            firsts = [prompt + t for t in firsts]
        if self.do_lower_case:
            firsts = [t.lower() for t in firsts]
            seconds = None if seconds is None else [t.lower() for t in seconds]
        return firsts, seconds

    def tokenize(self, texts: list[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Pad and truncate ``texts`` (strings, or (text, text) pairs) into tensors for ``forward``.

        With ``prompt`` the prompt is prepended to each (first) text and ``prompt_length`` (its number of
        tokens, without a trailing special token) is added to the features for prompt-excluding pooling.
        """
        firsts, seconds = self._prepare(list(texts), prompt)
        args = (firsts,) if seconds is None else (firsts, seconds)
        call = {
            "padding": kwargs.get("padding", True),
            "truncation": "longest_first",
            "max_length": self.max_seq_length,
            "return_tensors": "pt",
            **(self.processing_kwargs.get("common") or {}),
            **(self.processing_kwargs.get("text") or {}),
        }
        features = dict(self.tokenizer(*args, **call))
        if prompt:
            features["prompt_length"] = self.prompt_length(prompt)
        return features

    def prompt_length(self, prompt: str) -> int:
        """Number of tokens the prompt contributes at the start of a text (cached per prompt)."""
        if prompt not in self._prompt_lengths:
            text = prompt.lower() if self.do_lower_case else prompt
            ids = self.tokenizer([text], truncation="longest_first", max_length=self.max_seq_length)[
                "input_ids"
            ][0]
            length = len(ids)
            if ids and ids[-1] in set(self.tokenizer.all_special_ids):
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]

    # -- forward -------------------------------------------------------------------------------------------
    def _packed_forward(self, inputs: dict[str, Any]) -> Any:
        """The forward that skips padding for this model (``raystx.models.packed`` for BERT-style encoders,
        ``raystx.models.packed_hf`` for decoders and ModernBERT), or None: unsupported model, no mask, or off."""
        if not self.packed or "attention_mask" not in inputs or "input_ids" not in inputs:
            return None
        if has_adapters(self.auto_model):  # the packed forward reads the linear weights, not adapter layers
            return None
        if getattr(self.auto_model.config, "output_attentions", False):
            return None
        if self._packed_ok is None:
            from raystx.models.packed import packed_forward, packed_supported
            from raystx.models.packed_hf import hf_packed_forward, hf_packed_supported

            if packed_supported(self.auto_model):
                self._packed_ok = packed_forward
            elif os.environ.get("RAYSTX_PACKED", "1") != "0" and hf_packed_supported(self.auto_model):
                self._packed_ok = hf_packed_forward
            else:
                self._packed_ok = False
        return self._packed_ok or None

    def _use_packed(self, inputs: dict[str, Any]) -> bool:
        """Whether ``forward`` skips padding for these inputs."""
        return self._packed_forward(inputs) is not None

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        inputs = {name: features[name] for name in self.model_input_names if name in features}
        packed_forward = self._packed_forward(inputs)
        if packed_forward is not None:
            want_states = bool(getattr(self.auto_model.config, "output_hidden_states", False))
            token_embeddings, hidden_states = packed_forward(self.auto_model, inputs, want_states)
            features["token_embeddings"] = token_embeddings
            if hidden_states is not None:
                features["all_layer_embeddings"] = hidden_states
            return features
        output = self.auto_model(**inputs, return_dict=True, **self._call_kwargs)
        token_embeddings: Tensor = output[0]
        features["token_embeddings"] = token_embeddings
        hidden_states = getattr(output, "hidden_states", None)
        if hidden_states is not None:
            features["all_layer_embeddings"] = hidden_states
        return features

    # -- save / load ---------------------------------------------------------------------------------------
    def get_config_dict(self) -> dict[str, Any]:
        config = {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case, **ST6_TEXT_KEYS}
        if self.processing_kwargs:
            config["processing_kwargs"] = self.processing_kwargs
        return config

    def save(self, output_path: str | os.PathLike, max_shard_size: int | str | None = None) -> None:
        """Write the module's folder. The weights are one ``model.safetensors``, or when bigger than
        ``max_shard_size`` (default: transformers' ``save_pretrained`` default) ``model-0000i-of-0000N.safetensors``
        shards with ``model.safetensors.index.json``, as transformers writes them. With ``save_weights`` False
        (the FSDP export, which streams the weights into the folder itself) only the config is written."""
        output_path = Path(output_path)
        if has_adapters(self.auto_model):  # the adapter only, in PEFT's layout
            save_adapter(self.auto_model, output_path)
        elif not self.save_weights:
            save_config_only(self.auto_model, output_path)
        else:
            shards = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
            self.auto_model.save_pretrained(str(output_path), safe_serialization=True, **shards)
        self.tokenizer.save_pretrained(str(output_path))
        self._record_padding_side(output_path)
        write_json(output_path / self.config_file_name, self.get_config_dict(), indent=4)

    def _record_padding_side(self, output_path: Path) -> None:
        """Write the tokenizer's current ``padding_side`` into ``tokenizer_config.json``.

        transformers saves only the arguments the tokenizer was built with, so a side set afterwards
        (``tokenizer.padding_side = "left"``) would be lost; sentence-transformers and transformers read it there.
        """
        path = output_path / "tokenizer_config.json"
        config = read_json(path)
        side = getattr(self.tokenizer, "padding_side", None)
        if isinstance(config, dict) and side is not None and config.get("padding_side") != side:
            config["padding_side"] = side
            write_json(path, config, indent=2)

    @classmethod
    def load_config(cls, input_path: str | os.PathLike) -> dict[str, Any]:
        for name in CONFIG_FILE_NAMES:
            config = read_json(Path(input_path) / name)
            if isinstance(config, dict):
                return dict(config)
        return {}

    @classmethod
    def load(
        cls,
        input_path: str | os.PathLike,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        cache_folder: str | None = None,
        **kwargs: Any,
    ) -> Transformer:
        """Load from a module directory, merging its stored kwargs with the caller's (caller wins).

        A stored config can never switch ``trust_remote_code`` on; only the caller can.
        """
        stored = cls.load_config(input_path)
        task = stored.get("transformer_task", "feature-extraction")
        if task != "feature-extraction":
            raise ValueError(
                f"{input_path}: transformer_task {task!r} is not supported (only feature-extraction)"
            )
        given = {
            "model_kwargs": model_kwargs,
            "tokenizer_kwargs": tokenizer_kwargs,
            "config_kwargs": config_kwargs,
        }
        merged: dict[str, dict[str, Any]] = {}
        for target, aliases in _KWARG_SECTIONS.items():
            section: dict[str, Any] = {}
            for alias in aliases:
                section.update(stored.get(alias) or {})
            section.pop("trust_remote_code", None)
            section.update(given[target] or {})
            merged[target] = section
        return cls(
            input_path,
            max_seq_length=stored.get("max_seq_length"),
            do_lower_case=bool(stored.get("do_lower_case", False)),
            trust_remote_code=trust_remote_code,
            cache_dir=cache_folder,
            processing_kwargs=stored.get("processing_kwargs"),
            **merged,
        )

    def extra_repr(self) -> str:
        return f"max_seq_length={self.max_seq_length}, do_lower_case={self.do_lower_case}, architecture={type(self.auto_model).__name__}"
