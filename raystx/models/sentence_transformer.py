"""SentenceTransformer: an ordered list of modules (``torch.nn.Sequential``) that maps texts to embeddings.

Loads and saves the sentence-transformers on-disk format (``modules.json`` + one directory per module +
``config_sentence_transformers.json``), so a directory written here loads in ``sentence_transformers`` 6.x
and vice versa. A plain Hugging Face encoder directory becomes Transformer + mean Pooling.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from raystx.models._io import read_json, write_json
from raystx.models.adapter_mixin import PeftAdapterMixin
from raystx.models.card_data import SentenceTransformerModelCardData
from raystx.models.hub import resolve_model_path
from raystx.models.model_card import generate_model_card
from raystx.models.pooling import Pooling
from raystx.models.quantize import PRECISIONS, quantize_embeddings
from raystx.models.registry import load_module, module_class_for
from raystx.models.router import Router
from raystx.models.transformer import Transformer
from raystx.models.weights_origin import WeightsOrigin
from raystx.util import batch_to_device, similarity_fn

logger = logging.getLogger(__name__)

SIMILARITY_FN_NAMES = ("cosine", "dot", "euclidean", "manhattan")
MODEL_MARKERS = ("modules.json", "config_sentence_transformers.json")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _safe_subpath(root: Path, sub: str) -> Path:
    """``root / sub`` for a relative ``sub`` that stays inside ``root`` (modules.json paths are untrusted)."""
    rel = PurePosixPath(sub.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"modules.json path {sub!r} must be relative and stay inside the model directory")
    return root / rel


def _similarity_name(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "value", value)  # accepts a SimilarityFunction enum member
    aliases = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot"}
    name = aliases.get(name, name)
    if name not in SIMILARITY_FN_NAMES:
        raise ValueError(f"similarity_fn_name must be one of {SIMILARITY_FN_NAMES}, got {value!r}")
    return name


class SentenceTransformer(PeftAdapterMixin, nn.Sequential):
    """Text embedding model made of modules applied in order to a feature dict.

    Args:
        model_name_or_path: a sentence-transformers directory, a plain Hugging Face encoder directory, or a
            Hub id (downloaded with ``huggingface_hub``; needs network access).
        modules: build from these modules instead (a list, or an ordered dict name -> module).
        device: where to run (default: ``cuda`` if available, else ``cpu``).
        prompts: prompt name -> text prepended to inputs; ``default_prompt_name`` picks the one used by default.
        similarity_fn_name: ``cosine`` (default), ``dot``, ``euclidean`` or ``manhattan``.
        trust_remote_code: allow custom model code (Transformer) and non-torch activations (Dense).
        truncate_dim: keep only the first dimensions of embeddings in ``encode`` (Matryoshka models).
        model_kwargs / tokenizer_kwargs / config_kwargs: forwarded to the Hugging Face loaders.
        cache_folder / token: Hugging Face Hub cache and token, for Hub ids.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        modules: Iterable[nn.Module] | OrderedDict[str, nn.Module] | None = None,
        device: str | torch.device | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        trust_remote_code: bool = False,
        truncate_dim: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        cache_folder: str | None = None,
        token: str | bool | None = None,
        model_card_data: SentenceTransformerModelCardData | dict[str, Any] | None = None,
    ) -> None:
        stored: dict[str, Any] = {}
        origin: tuple[Path, dict[str, Any]] | None = None
        if model_name_or_path is not None and modules is None:
            root = resolve_model_path(model_name_or_path, cache_folder=cache_folder, token=token)
            loader_kwargs = {
                "trust_remote_code": trust_remote_code,
                "model_kwargs": model_kwargs,
                "tokenizer_kwargs": tokenizer_kwargs,
                "config_kwargs": config_kwargs,
                "cache_folder": cache_folder,
            }
            if (root / "modules.json").is_file():
                modules = self._load_modules(root, loader_kwargs)
                stored = read_json(root / "config_sentence_transformers.json") or {}
            else:
                transformer = Transformer.load(root, **loader_kwargs)
                modules = [transformer, Pooling(transformer.get_word_embedding_dimension(), "mean")]
            origin = (root, {k: v for k, v in loader_kwargs.items() if k != "cache_folder"})
        if modules is None:
            modules = []
        if not isinstance(modules, OrderedDict):
            modules = OrderedDict((str(i), m) for i, m in enumerate(modules))
        super().__init__(modules)

        # user arguments win over the stored model config
        self.prompts: dict[str, str] = dict(stored.get("prompts") or {})
        self.prompts.update(prompts or {})
        self.default_prompt_name = default_prompt_name or stored.get("default_prompt_name")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"default_prompt_name {self.default_prompt_name!r} is not a key of prompts {list(self.prompts)}"
            )
        stored_similarity = stored.get("similarity_fn_name")
        self._similarity_fn_name = _similarity_name(
            similarity_fn_name
            if similarity_fn_name is not None
            else (stored_similarity if stored_similarity in SIMILARITY_FN_NAMES else None)
        )
        self.truncate_dim = truncate_dim if truncate_dim is not None else stored.get("truncate_dim")
        # What the README.md written by save() says; a dict of its fields is accepted too.
        self.model_card_data = SentenceTransformerModelCardData.from_any(model_card_data)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # meta parameters (a model built under ``empty_weights()``) stay where they are
        self._apply(lambda t: t if t.is_meta else t.to(device))
        # which directory the weights are those of, while they are (FSDP workers may read it themselves)
        self._weights_origin = None if origin is None else WeightsOrigin.record(self, *origin)

    # -- loading -------------------------------------------------------------------------------------------
    @staticmethod
    def _load_modules(root: Path, loader_kwargs: dict[str, Any]) -> OrderedDict[str, nn.Module]:
        entries = read_json(root / "modules.json")
        if not isinstance(entries, list):
            raise ValueError(f"{root / 'modules.json'} must hold a list of modules")
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        for entry in sorted(entries, key=lambda e: e.get("idx", 0)):
            sub = entry.get("path", "")
            _safe_subpath(root, sub)  # before any custom code is imported
            cls = module_class_for(entry["type"], loader_kwargs["trust_remote_code"], root)
            modules[str(entry.get("name", len(modules)))] = load_module(cls, root, sub, loader_kwargs)
        return modules

    @staticmethod
    def load(input_path: str | os.PathLike) -> SentenceTransformer:
        return SentenceTransformer(input_path)

    # -- properties ----------------------------------------------------------------------------------------
    def _first_module(self) -> nn.Module:
        return next(iter(self._modules.values()))

    def _last_module(self) -> nn.Module:
        return next(reversed(self._modules.values()))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def tokenizer(self) -> Any:
        return getattr(self._first_module(), "tokenizer", None)

    @tokenizer.setter
    def tokenizer(self, value: Any) -> None:
        self._first_module().tokenizer = value

    @property
    def max_seq_length(self) -> int | None:
        return getattr(self._first_module(), "max_seq_length", None)

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self._first_module().max_seq_length = value

    def get_max_seq_length(self) -> int | None:
        return self.max_seq_length

    @property
    def similarity_fn_name(self) -> str:
        """Name of the similarity used by ``similarity``; ``cosine`` unless set."""
        if self._similarity_fn_name is None:
            self._similarity_fn_name = "cosine"
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: Any) -> None:
        self._similarity_fn_name = _similarity_name(value)

    def get_sentence_embedding_dimension(self) -> int | None:
        """Width of ``sentence_embedding`` (after ``truncate_dim``), from the last module that knows it."""
        dim = None
        for module in reversed(list(self._modules.values())):
            getter = getattr(module, "get_sentence_embedding_dimension", None)
            if callable(getter):
                dim = getter()
                break
        if dim is not None and self.truncate_dim is not None:
            return min(dim, self.truncate_dim)
        return dim

    get_embedding_dimension = get_sentence_embedding_dimension

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        for module in self._modules.values():
            if hasattr(module, "gradient_checkpointing_enable"):
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs)

    # -- forward -------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Features (``input_ids``, ``attention_mask``, ...) for ``texts``, from the first module."""
        return self._first_module().tokenize(list(texts), prompt=prompt, **kwargs)

    preprocess = tokenize

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Run every module in order; adds ``token_embeddings`` (if any) and ``sentence_embedding``."""
        for module in self._modules.values():
            features = module(features)
        return features

    # -- prompts -------------------------------------------------------------------------------------------
    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The prompt text to use: ``prompt``, else ``prompts[prompt_name]``, else the default prompt."""
        if prompt is not None:
            if prompt_name is not None:
                logger.warning("Both prompt and prompt_name given; using prompt")
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"Prompt name {prompt_name!r} not found in prompts {list(self.prompts)}")
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    # -- encode --------------------------------------------------------------------------------------------
    def encode(
        self,
        sentences: str | Sequence[Any],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        task: str | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray | Tensor | list[Any]:
        """Embed ``sentences`` (a string gives a 1-D result, a list a 2-D one, rows in input order).

        ``pool`` (what ``start_multi_process_pool`` returns, an ``InferencePool`` or a ``ScalingConfig``) or a
        list ``device`` spreads the texts over a Ray Data actor pool of model replicas, ``chunk_size`` texts
        at a time (``raystx.infer.model_pool``); the result is the same as encoding here.

        Inputs are sorted longest-first so each batch pads little, run under ``torch.inference_mode`` in eval
        mode (the previous train/eval mode is restored), and put back in input order. ``precision`` other than
        float32 quantizes the whole result (see ``raystx.models.quantize``). ``output_value="token_embeddings"``
        returns one (tokens, dim) tensor per input; ``None`` returns every feature per input. ``task`` picks the
        route of a ``Router`` first module (``query``/``document``); models without one ignore it.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        if convert_to_tensor:
            convert_to_numpy = False
        if output_value != "sentence_embedding":
            convert_to_numpy = convert_to_tensor = False
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        prompt_text = self.resolve_prompt(prompt, prompt_name)
        truncate_dim = truncate_dim if truncate_dim is not None else self.truncate_dim
        task_kwargs = {"task": task} if task is not None and isinstance(self._first_module(), Router) else {}
        if pool is not None or isinstance(device, (list, tuple)):
            stacked = self._encode_on_pool(
                texts, pool, device, output_value, prompt_text, batch_size, normalize_embeddings,
                truncate_dim, task_kwargs.get("task"), chunk_size,
            )  # fmt: skip
            return self._convert(stacked, single, precision, convert_to_numpy, convert_to_tensor)
        if device is not None:
            self.to(device)
        run_device = self.device

        order = sorted(range(len(texts)), key=lambda i: -_text_length(texts[i]))
        results: list[Any] = [None] * len(texts)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                batches = range(0, len(order), batch_size)
                if show_progress_bar:
                    from tqdm.auto import tqdm

                    batches = tqdm(batches, desc="Batches")
                for start in batches:
                    idx = order[start : start + batch_size]
                    features = self.tokenize([texts[i] for i in idx], prompt=prompt_text, **task_kwargs)
                    out = self.forward(batch_to_device(features, run_device))
                    rows = self._collect(
                        out, output_value, len(idx), normalize_embeddings, truncate_dim, convert_to_numpy
                    )
                    for i, row in zip(idx, rows):
                        results[i] = row
        finally:
            self.train(was_training)

        if output_value != "sentence_embedding":
            return results[0] if single else results
        if not results:
            stacked = torch.empty((0, self.get_sentence_embedding_dimension() or 0))
        else:
            stacked = torch.stack(results)
        return self._convert(stacked, single, precision, convert_to_numpy, convert_to_tensor)

    def _convert(
        self, stacked: Tensor, single: bool, precision: str, convert_to_numpy: bool, convert_to_tensor: bool
    ) -> Any:
        """The (n, dim) embeddings as ``encode`` returns them: quantized, numpy/tensor/list, 1-D if single."""
        if precision != "float32":
            quantized = quantize_embeddings(stacked, precision)
            out_value: Any = torch.from_numpy(quantized) if convert_to_tensor else quantized
            if not convert_to_tensor and not convert_to_numpy:
                out_value = list(torch.from_numpy(quantized))
        elif convert_to_tensor:
            out_value = stacked
        elif convert_to_numpy:
            out_value = (
                (stacked.float() if stacked.dtype in (torch.bfloat16, torch.float16) else stacked)
                .cpu()
                .numpy()
            )
        else:
            out_value = list(stacked)
        return out_value[0] if single else out_value

    def _encode_on_pool(
        self,
        texts: list[Any],
        pool: Any,
        device: Any,
        output_value: str | None,
        prompt: str | None,
        batch_size: int,
        normalize: bool,
        truncate_dim: int | None,
        task: str | None,
        chunk_size: int | None,
    ) -> Tensor:
        """``encode``'s float32 (n, dim) result computed by a Ray actor pool of replicas of this model."""
        from raystx.infer.model_pool import encode_on_pool, resolve_pool

        if output_value != "sentence_embedding":
            raise ValueError(
                f"encode(pool=...) returns sentence embeddings only; output_value={output_value!r} needs "
                "encoding in this process (pool=None)"
            )
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("encode(pool=...) takes texts (str) only; encode other inputs with pool=None")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        encode_pool = resolve_pool(self, pool, device)
        try:
            emb = encode_on_pool(
                texts, encode_pool, prompt=prompt, batch_size=batch_size, normalize=normalize,
                truncate_dim=truncate_dim, task=task, chunk_size=chunk_size,
            )  # fmt: skip
        finally:
            if encode_pool is not pool:
                encode_pool.close()
        if not texts:
            return torch.empty((0, self.get_sentence_embedding_dimension() or 0))
        return torch.from_numpy(emb)

    def start_multi_process_pool(self, target_devices: list[str] | None = None, **scaling: Any) -> Any:
        """A Ray encode pool for ``encode(..., pool=...)``: one model replica per entry of ``target_devices``
        (default: one per cluster GPU, else 4 CPU replicas), or ``num_workers``/``use_gpu``/
        ``cpus_per_worker``/``scaling_config`` keywords. The model is snapshotted now and the replicas start
        loading it (``pool.wait_ready()`` blocks until they have); ``mine_hard_negatives(pool=...)`` reuses them."""
        from raystx.infer.model_pool import start_encode_pool

        return start_encode_pool(self, target_devices, **scaling)

    @staticmethod
    def stop_multi_process_pool(pool: Any) -> None:
        """Release a pool from ``start_multi_process_pool``."""
        from raystx.infer.model_pool import stop_encode_pool

        stop_encode_pool(pool)

    def encode_multi_process(self, sentences: Sequence[str], pool: Any, **kwargs: Any) -> Any:
        """Deprecated in sentence-transformers: ``encode(sentences, pool=pool, ...)``."""
        return self.encode(sentences, pool=pool, **kwargs)

    @staticmethod
    def _collect(
        out: dict[str, Any],
        output_value: str | None,
        n: int,
        normalize: bool,
        truncate_dim: int | None,
        to_cpu: bool,
    ) -> list[Any]:
        """Split one batch's output features into per-input rows."""
        if truncate_dim is not None and "sentence_embedding" in out:
            out["sentence_embedding"] = out["sentence_embedding"][..., :truncate_dim]
        if output_value == "sentence_embedding":
            emb = out["sentence_embedding"]
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
            emb = emb.detach()
            if to_cpu:
                emb = emb.cpu()
            return list(emb)
        if output_value == "token_embeddings":
            rows = []
            for tokens, mask in zip(out["token_embeddings"], out["attention_mask"]):
                length = int(mask.nonzero().max().item()) + 1 if mask.any() else 1
                rows.append(tokens[:length].detach())
            return rows
        if output_value is None:
            rows = []
            for i in range(n):
                rows.append(
                    {
                        k: (v[i] if isinstance(v, Tensor) and v.dim() > 0 and v.size(0) == n else v)
                        for k, v in out.items()
                    }
                )
            return rows
        return list(out[output_value].detach())

    def encode_query(self, sentences: str | Sequence[Any], **kwargs: Any) -> Any:
        """``encode`` with the ``query`` prompt when ``prompts`` has that key and no prompt was given.

        A ``query`` prompt that is the empty string still wins over ``default_prompt_name``, as in
        sentence-transformers.
        """
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        kwargs.setdefault("task", "query")  # the route of a Router model
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[Any], **kwargs: Any) -> Any:
        """``encode`` with the first of the ``document``/``passage``/``corpus`` prompts ``prompts`` has."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        kwargs.setdefault("task", "document")
        return self.encode(sentences, **kwargs)

    @contextmanager
    def truncate_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Within the block, ``encode`` keeps the first ``truncate_dim`` dimensions (``None``: all)."""
        previous = self.truncate_dim
        self.truncate_dim = truncate_dim
        try:
            yield
        finally:
            self.truncate_dim = previous

    @contextmanager
    def truncate_sentence_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Old name of ``truncate_embeddings`` (FutureWarning, as in sentence-transformers)."""
        warnings.warn(
            "truncate_sentence_embeddings is renamed to truncate_embeddings", FutureWarning, stacklevel=3
        )
        with self.truncate_embeddings(truncate_dim):
            yield

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        """Set ``include_prompt`` of the first ``Pooling`` module (prompt tokens pooled or not)."""
        for module in self._modules.values():
            if isinstance(module, Pooling):
                module.include_prompt = include_prompt
                break

    def evaluate(self, evaluator: Any, output_path: str | None = None) -> dict[str, float] | float:
        """Run ``evaluator(self, output_path)`` (the directory is created first) and return its result."""
        if output_path is not None:
            os.makedirs(output_path, exist_ok=True)
        return evaluator(self, output_path)

    # -- similarity ----------------------------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """(n, m) scores between rows of the two inputs under ``similarity_fn_name``."""
        return similarity_fn(self.similarity_fn_name)(_as_tensor(embeddings1), _as_tensor(embeddings2))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """(n,) scores between matching rows under ``similarity_fn_name``."""
        return similarity_fn(self.similarity_fn_name, pairwise=True)(
            _as_tensor(embeddings1), _as_tensor(embeddings2)
        )

    # -- saving --------------------------------------------------------------------------------------------
    def _model_config(self) -> dict[str, Any]:
        versions = {
            "raystx": _version("raystx"),
            "transformers": _version("transformers"),
            "pytorch": torch.__version__,
        }
        config: dict[str, Any] = {
            "__version__": {k: v for k, v in versions.items() if v},
            "model_type": "SentenceTransformer",
            "prompts": dict(self.prompts),
            "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": self.similarity_fn_name,
        }
        if self.truncate_dim is not None:
            config["truncate_dim"] = self.truncate_dim
        return config

    def save(
        self,
        path: str | os.PathLike,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
        merge_adapters: bool = False,
        max_shard_size: int | str | None = None,
    ) -> None:
        """Write the model as a sentence-transformers directory (weights always as safetensors).

        ``max_shard_size`` (e.g. ``"5GB"``; default: transformers' ``save_pretrained`` default) splits a
        Transformer module's weights bigger than that into ``model-0000i-of-0000N.safetensors`` files plus
        ``model.safetensors.index.json``, the Hugging Face layout.

        ``path`` must not exist, be empty, or already hold a model (``modules.json``); any other non-empty
        directory is refused so that user files are never overwritten. A model with a PEFT adapter is saved in the
        adapter layout (``adapter_config.json`` + ``adapter_model.safetensors`` instead of the base weights);
        ``merge_adapters=True`` saves a plain model instead, the adapter merged into the base weights, which
        loads without peft (see ``raystx.models.adapters``).
        """
        from raystx.models import adapters

        if merge_adapters and adapters.find_adapter_host(self) is not None:
            merged = adapters.merged_copy(self)
            merged.save(
                path,
                model_name,
                create_model_card,
                train_datasets,
                safe_serialization,
                max_shard_size=max_shard_size,
            )
            return
        root = Path(path)
        if root.exists():
            if not root.is_dir():
                raise FileExistsError(f"{str(root)!r} exists and is not a directory")
            if any(root.iterdir()) and not any((root / marker).is_file() for marker in MODEL_MARKERS):
                raise FileExistsError(
                    f"Refusing to save into {str(root)!r}: it is not empty and does not hold a saved model "
                    "(no modules.json). Choose a new or empty directory."
                )
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "config_sentence_transformers.json", self._model_config(), sort_keys=True)
        entries = []
        for idx, (name, module) in enumerate(self._modules.items()):
            sub = module_folder(idx, module)
            module_dir = root / sub
            module_dir.mkdir(parents=True, exist_ok=True)
            if not hasattr(module, "save"):
                raise TypeError(f"Module {name!r} ({type(module).__name__}) has no save(path) method")
            if max_shard_size is not None and "max_shard_size" in inspect.signature(module.save).parameters:
                module.save(module_dir, max_shard_size=max_shard_size)
            else:
                module.save(module_dir)
            class_ref = (
                getattr(module, "st_class_ref", "") or f"{type(module).__module__}.{type(module).__name__}"
            )
            entries.append({"idx": idx, "name": name, "path": sub, "type": class_ref})
        write_json(root / "modules.json", entries)
        if create_model_card:
            if model_name:
                self.model_card_data.setdefault("model_name", model_name)
            if train_datasets:
                self.model_card_data.setdefault("train_datasets", list(train_datasets))
            (root / "README.md").write_text(generate_model_card(self), encoding="utf-8")

    def fit(self, train_objectives: Any, **kwargs: Any) -> Any:
        """The sentence-transformers v2 ``fit()`` API, run through the Ray trainer (see ``raystx.train.fit``)."""
        from raystx.train.fit import fit

        return fit(self, train_objectives, **kwargs)

    def save_pretrained(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Same as ``save``."""
        self.save(path, **kwargs)

    # -- Hugging Face Hub ----------------------------------------------------------------------------------
    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        local_model_path: str | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload the model to the Hub repository ``repo_id`` (created if needed); returns the commit URL.

        Arguments as in sentence-transformers: ``local_model_path`` uploads that saved directory instead of this
        model; ``exist_ok=False`` refuses an existing repository (unless ``create_pr``); ``replace_model_card=False``
        keeps a ``README.md`` the repository already has; ``train_datasets`` are named in the model card. The
        upload goes through ``huggingface_hub.HfApi`` (see ``raystx.hub.push_to_hub``).
        """
        from raystx.hub import push_to_hub

        options: dict[str, Any] = dict(
            token=token,
            private=private,
            commit_message=commit_message or f"Add new {type(self).__name__} model",
            exist_ok=exist_ok or create_pr,
            revision=revision,
            create_pr=create_pr,
            replace_model_card=replace_model_card,
        )
        if local_model_path is not None:
            return push_to_hub(local_model_path, repo_id, **options)
        with tempfile.TemporaryDirectory(prefix="raystx-push-") as tmp:
            card = self.model_card_data
            if card is not None:
                card["model_id"] = repo_id
            self.save(tmp, train_datasets=train_datasets, safe_serialization=safe_serialization)
            return push_to_hub(tmp, repo_id, **options)

    def save_to_hub(
        self,
        repo_id: str,
        organization: str | None = None,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str = "Add new model.",
        local_model_path: str | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
    ) -> str:
        """Deprecated name of ``push_to_hub`` (``organization`` is prepended to a bare ``repo_id``)."""
        warnings.warn("save_to_hub is deprecated; use push_to_hub instead", FutureWarning, stacklevel=2)
        if organization:
            if "/" not in repo_id:
                repo_id = f"{organization}/{repo_id}"
            elif repo_id.split("/")[0] != organization:
                raise ValueError(
                    f"organization={organization!r} does not match the namespace of repo_id={repo_id!r}; "
                    "pass repo_id='organization/name' and no organization"
                )
        return self.push_to_hub(
            repo_id=repo_id,
            token=token,
            private=private,
            safe_serialization=safe_serialization,
            commit_message=commit_message,
            local_model_path=local_model_path,
            exist_ok=exist_ok,
            replace_model_card=replace_model_card,
            train_datasets=train_datasets,
        )


def module_folder(idx: int, module: nn.Module) -> str:
    """The folder (relative to the model directory) ``save`` writes the ``idx``-th module into."""
    in_root = idx == 0 and getattr(module, "save_in_root", False)
    return "" if in_root else f"{idx}_{type(module).__name__}"


def _text_length(item: Any) -> int:
    """Sort key for length-sorted batching: characters of a text (summed over a pair)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, (tuple, list)):
        return sum(len(str(x)) for x in item)
    return 1


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, list) and x and isinstance(x[0], Tensor):
        return torch.stack(x)
    return torch.as_tensor(np.asarray(x))
