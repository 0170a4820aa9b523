"""Every sentence-transformers module path a training script imports, resolved to raystx code by one table.

A script ported with ``s/sentence_transformers/raystx/`` imports paths such as ``raystx.training_args``,
``raystx.losses.ContrastiveLoss`` (a module in sentence-transformers' old layout) or
``raystx.sentence_transformer.losses`` (its 6.x layout). ``ALIASES`` maps each such path to the raystx modules
that provide its names; a meta-path finder (``install``, called by ``import raystx``) creates a small module
object for the path on first import, which looks names up in those sources on demand. Nothing is imported before
a name is asked for, so aliasing costs nothing for code that does not use it.

Each entry also lists the names sentence-transformers has at that path that raystx deliberately does not
provide, with the reason; asking for one raises ``ImportError``/``AttributeError`` with that reason. Entries
marked ``real`` are ordinary raystx modules listed only so that ``tests/test_aliases.py`` checks their names
against sentence-transformers too.

A source is ``"package.module"`` (all its public names) or ``"package.module:Name,Other"`` (only those names).
Public names of a module are its ``__all__``, else the classes and functions defined in it (not imported) whose
names do not start with ``_``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_UNSET = object()


@dataclass(frozen=True)
class Alias:
    """One module path: where its names come from and which sentence-transformers names are left out (why)."""

    sources: tuple[str, ...] = ()
    missing: Mapping[str, str] = field(default_factory=dict)
    real: bool = False


# ------------------------------------------------------------------------------------------ reasons
OTHER_MODELS = "CrossEncoder, SparseEncoder and MultiVectorEncoder models are not part of raystx"
EXPORT = "ONNX/OpenVINO export is not part of raystx; export a saved model with sentence-transformers"
SAMPLER = (
    "raystx plans batches itself on every worker (raystx.data.schedule); pick BatchSamplers / "
    "MultiDatasetBatchSamplers in SentenceTransformerTrainingArguments instead of a sampler class"
)
LEGACY_MODULE = (
    "not implemented in raystx: its models are text-only (no CLIPModel) and raystx.models.ModelModule is the "
    "base class of its modules"
)
MINING = "resolve_ids (joining ID columns to lookup datasets) is not in raystx yet"
MULTI_VECTOR = "multi-vector (late-interaction) scoring is not part of raystx"
SPARSE = "a sparse-encoder helper; sparse encoders are not part of raystx"
INTERNAL = "an internal helper of sentence-transformers, not part of its training API"
HUB_IO = "a Hub download helper; raystx resolves model names with raystx.models.hub.resolve_model_path"
ENVIRONMENT = "an environment check of sentence-transformers; raystx declares its dependencies in pyproject"
CARD_CALLBACK = (
    "raystx writes the model card when the trainer saves (raystx.train.model_card); no callback needed"
)
COLLATOR = (
    "raystx tokenizes and collates inside each Ray worker (raystx.data.collate.BatchCollator); a custom "
    "data_collator is not supported"
)
CT_LOADER = (
    "raystx's ContrastiveTensionLoss takes (sentence_0, sentence_1) columns directly; build them with "
    "datasets instead of this loader"
)
BASE_CLASSES = (
    "raystx has one model type, so no shared base classes: use SentenceTransformer, SentenceTransformerTrainer "
    "and SentenceTransformerTrainingArguments"
)
PEFT_WRAPPER = (
    "raystx's adapter methods call raystx.models.adapters directly (no wrapper around transformers' PEFT "
    "integration); use SentenceTransformer.add_adapter / load_adapter / set_adapter"
)
FAISS = "approximate search backends (faiss/usearch) are not part of raystx; use raystx.util.semantic_search"

# ------------------------------------------------------------------------------------------ tables
# sentence-transformers class name -> raystx module (file) holding it, per package. The file names mirror
# sentence-transformers' own, so the same file also serves the 6.x path ``sentence_transformer.losses.<file>``.
LOSS_FILES = {
    "AdaptiveLayerLoss": "adaptive_layer",
    "AnglELoss": "angle",
    "BatchAllTripletLoss": "batch_all_triplet",
    "BatchHardSoftMarginTripletLoss": "batch_hard_soft_margin_triplet",
    "BatchHardTripletLoss": "batch_hard_triplet",
    "BatchSemiHardTripletLoss": "batch_semi_hard_triplet",
    "CachedGISTEmbedLoss": "cached_gist_embed",
    "CachedMultipleNegativesRankingLoss": "cached_multiple_negatives_ranking",
    "CachedMultipleNegativesSymmetricRankingLoss": "cached_multiple_negatives_symmetric_ranking",
    "CoSENTLoss": "cosent",
    "ContrastiveLoss": "contrastive",
    "ContrastiveTensionLoss": "contrastive_tension",
    "CosineSimilarityLoss": "cosine_similarity",
    "DenoisingAutoEncoderLoss": "denoising_auto_encoder",
    "DistillKLDivLoss": "distill_kl_div",
    "GISTEmbedLoss": "gist_embed",
    "MSELoss": "mse",
    "MarginMSELoss": "margin_mse",
    "Matryoshka2dLoss": "matryoshka_2d",
    "MatryoshkaLoss": "matryoshka",
    "MegaBatchMarginLoss": "mega_batch_margin",
    "MultipleNegativesRankingLoss": "multiple_negatives_ranking",
    "MultipleNegativesSymmetricRankingLoss": "multiple_negatives_symmetric_ranking",
    "OnlineContrastiveLoss": "online_contrastive",
    "SoftmaxLoss": "softmax",
    "TripletLoss": "triplet",
}
LOSS_MISSING = {
    "adaptive_layer": {"ForwardDecorator": INTERNAL, "TransformerDecorator": INTERNAL},
    "matryoshka": {"CachedLossDecorator": INTERNAL, "ForwardDecorator": INTERNAL},
    "contrastive_tension": {"ContrastiveTensionDataLoader": CT_LOADER},
}
EVALUATOR_FILES = {
    "BinaryClassificationEvaluator": "binary_classification",
    "EmbeddingSimilarityEvaluator": "embedding_similarity",
    "InformationRetrievalEvaluator": "information_retrieval",
    "LabelAccuracyEvaluator": "label_accuracy",
    "MSEEvaluator": "mse",
    "NanoBEIREvaluator": "nano_beir",
    "ParaphraseMiningEvaluator": "paraphrase_mining",
    "RerankingEvaluator": "reranking",
    "TranslationEvaluator": "translation",
    "TripletEvaluator": "triplet",
}
MODULE_FILES = {  # models.<Class> -> raystx.models.<file>
    "BoW": "bow",
    "CNN": "cnn",
    "Dense": "dense",
    "Dropout": "dropout",
    "LSTM": "lstm",
    "LayerNorm": "layer_norm",
    "Normalize": "normalize",
    "Pooling": "pooling",
    "StaticEmbedding": "static_embedding",
    "Transformer": "transformer",
    "WeightedLayerPooling": "weighted_layer_pooling",
    "WordEmbeddings": "word_embeddings",
    "WordWeights": "word_weights",
}
# the module types sentence-transformers 6.x keeps under sentence_transformer/modules/<file>.py
ST6_SENTENCE_MODULES = (
    "BoW",
    "CNN",
    "Dropout",
    "LSTM",
    "LayerNorm",
    "Pooling",
    "StaticEmbedding",
    "WeightedLayerPooling",
    "WordEmbeddings",
    "WordWeights",
)
TRANSFORMER_MISSING = {
    "ModalityParams": INTERNAL,
    "ProcessingKwargs": INTERNAL,
    "QueryExpansionConfig": INTERNAL,
    "set_temporary_class_attrs": INTERNAL,
}
MODULES_NOT_IN_RAYSTX = (  # models.<Class> sentence-transformers still loads, not in raystx (yet)
    "CLIPModel",
    "InputModule",
    "Module",
)
DATASET_FILES = {
    "DenoisingAutoEncoderDataset": "denoising_auto_encoder",
    "NoDuplicatesDataLoader": "no_duplicates_dataloader",
    "ParallelSentencesDataset": "parallel_sentences",
    "SentenceLabelDataset": "sentence_label",
    "SentencesDataset": "sentences",
}
READER_FILES = {  # reader class -> (sentence-transformers file, the classes that file holds)
    "InputExample": ("input_example", ("InputExample",)),
    "LabelSentenceReader": ("label_sentence", ("LabelSentenceReader",)),
    "NLIDataReader": ("nli_data", ("NLIDataReader",)),
    "PairedFilesReader": ("paired_files", ("PairedFilesReader",)),
    "STSDataReader": ("sts_data", ("STSDataReader", "STSBenchmarkDataReader")),
    "TripletReader": ("triplet", ("TripletReader",)),
}

SIMILARITY = "raystx.util:SimilarityFunction," + ",".join(
    [
        "cos_sim",
        "dot_score",
        "euclidean_sim",
        "manhattan_sim",
        "pairwise_angle_sim",
        "pairwise_cos_sim",
        "pairwise_dot_score",
        "pairwise_euclidean_sim",
        "pairwise_manhattan_sim",
        "pytorch_cos_sim",
    ]
)
SIMILARITY_MISSING = {
    "maxsim": MULTI_VECTOR,
    "maxsim_pairwise": MULTI_VECTOR,
    "mean_maxsim": MULTI_VECTOR,
    "mean_maxsim_pairwise": MULTI_VECTOR,
}
SAMPLER_MISSING = {
    name: SAMPLER
    for name in (
        "DefaultBatchSampler",
        "GroupByLabelBatchSampler",
        "MultiDatasetDefaultBatchSampler",
        "NoDuplicatesBatchSampler",
        "ProportionalBatchSampler",
        "RoundRobinBatchSampler",
    )
}
MODELS_MISSING = {name: LEGACY_MODULE for name in MODULES_NOT_IN_RAYSTX}
LOSSES_MISSING = {"ContrastiveTensionDataLoader": CT_LOADER}
CARD_MISSING = {"ModelCardCallback": CARD_CALLBACK, "SentenceTransformerModelCardCallback": CARD_CALLBACK}
UTIL_MISSING = {
    **SIMILARITY_MISSING,
    "all_gather_padded": INTERNAL,
    "append_to_last_row": INTERNAL,
    "cat_padded_token_embeddings": MULTI_VECTOR,
    "check_package_availability": ENVIRONMENT,
    "check_teacher_targets": INTERNAL,
    "check_version_requirements": ENVIRONMENT,
    "compute_count_vector": SPARSE,
    "disable_datasets_caching": INTERNAL,
    "disable_logging": INTERNAL,
    "disabled_tqdm": INTERNAL,
    "http_get": HUB_IO,
    "import_module_class": INTERNAL,
    "is_accelerate_available": ENVIRONMENT,
    "is_datasets_available": ENVIRONMENT,
    "is_training_available": ENVIRONMENT,
    "load_dir_path": HUB_IO,
    "load_file_path": HUB_IO,
    "ORIGINAL_TRANSFORMER_MODELS": INTERNAL,
    "repad_flattened_features": MULTI_VECTOR,
    "resolve_ids": MINING,
    "save_to_hub_args_decorator": INTERNAL,
    "select_max_active_dims": SPARSE,
    "similarity_fct_name": INTERNAL,
    "stack_padded_token_embeddings": MULTI_VECTOR,
    "to_scipy_coo": SPARSE,
}
TOP_LEVEL_MISSING = {
    **{
        f"{model}{suffix}": OTHER_MODELS
        for model in ("CrossEncoder", "SparseEncoder", "MultiVectorEncoder")
        for suffix in ("", "ModelCardData", "Trainer", "TrainingArguments")
    },
    "DefaultBatchSampler": SAMPLER,
    "MultiDatasetDefaultBatchSampler": SAMPLER,
    "export_dynamic_quantized_onnx_model": EXPORT,
    "export_optimized_onnx_model": EXPORT,
    "export_static_quantized_openvino_model": EXPORT,
    "resolve_ids": MINING,
}

TRAINING_ARGS = (
    "raystx.train.args:BatchSamplers,MultiDatasetBatchSamplers,SentenceTransformerTrainingArguments"
)
TRAINER = "raystx.train.trainer:SentenceTransformerTrainer"
MODEL = "raystx.models.sentence_transformer:SentenceTransformer"
CARD = "raystx.train.model_card:SentenceTransformerModelCardData"
DATASETS = "raystx.data.legacy_datasets"
READERS = "raystx.data.legacy_readers"
SEQUENTIAL = "raystx.evaluation.sequential:SequentialEvaluator"
BASE_EVALUATOR = "raystx.evaluation.base:BaseEvaluator,SentenceEvaluator"


def _build() -> dict[str, Alias]:
    table: dict[str, Alias] = {
        # ordinary raystx modules, listed for the name check against sentence-transformers
        "raystx": Alias(missing=TOP_LEVEL_MISSING, real=True),
        "raystx.util": Alias(missing=UTIL_MISSING, real=True),
        "raystx.losses": Alias(missing=LOSSES_MISSING, real=True),
        "raystx.evaluation": Alias(real=True),
        "raystx.models": Alias(missing=MODELS_MISSING, real=True),
        # sentence-transformers' deprecated (pre-6.x) top-level modules
        "raystx.SentenceTransformer": Alias((MODEL,)),
        "raystx.training_args": Alias((TRAINING_ARGS,)),
        "raystx.trainer": Alias((TRAINER,)),
        "raystx.similarity_functions": Alias((SIMILARITY,), SIMILARITY_MISSING),
        "raystx.quantization": Alias(
            ("raystx.models.quantize:quantize_embeddings",),
            {"semantic_search_faiss": FAISS, "semantic_search_usearch": FAISS},
        ),
        "raystx.sampler": Alias(
            ("raystx.train.args:BatchSamplers,MultiDatasetBatchSamplers",), SAMPLER_MISSING
        ),
        "raystx.model_card": Alias((CARD,), CARD_MISSING),
        "raystx.data_collator": Alias((), {"SentenceTransformerDataCollator": COLLATOR}),
        "raystx.LoggingHandler": Alias(("raystx.logging_handler",)),
        "raystx.datasets": Alias((DATASETS,)),
        "raystx.readers": Alias((READERS,)),
        # sentence-transformers 6.x layout
        "raystx.sentence_transformer": Alias(
            (MODEL, TRAINER, CARD, "raystx.train.args:SentenceTransformerTrainingArguments"),
            {"SentenceTransformerDataCollator": COLLATOR},
        ),
        "raystx.sentence_transformer.model": Alias((MODEL,)),
        "raystx.sentence_transformer.losses": Alias(("raystx.losses",), LOSSES_MISSING),
        "raystx.sentence_transformer.evaluation": Alias(("raystx.evaluation",)),
        "raystx.sentence_transformer.modules": Alias(("raystx.models",), MODELS_MISSING),
        "raystx.sentence_transformer.training_args": Alias((TRAINING_ARGS,)),
        "raystx.sentence_transformer.trainer": Alias((TRAINER,)),
        "raystx.sentence_transformer.model_card": Alias((CARD,), CARD_MISSING),
        "raystx.sentence_transformer.data_collator": Alias((), {"SentenceTransformerDataCollator": COLLATOR}),
        "raystx.sentence_transformer.datasets": Alias((DATASETS,)),
        "raystx.sentence_transformer.readers": Alias((READERS,)),
        "raystx.base": Alias(
            (
                "raystx.train.args:BatchSamplers,MultiDatasetBatchSamplers",
                "raystx.models.adapter_mixin:PeftAdapterMixin",
            ),
            {
                **SAMPLER_MISSING,
                **dict.fromkeys(
                    ("BaseModel", "BaseDataCollator", "BaseTrainer", "BaseTrainingArguments"), BASE_CLASSES
                ),
            },
        ),
        "raystx.base.peft_mixin": Alias(
            ("raystx.models.adapter_mixin:PeftAdapterMixin",), {"peft_wrapper": PEFT_WRAPPER}
        ),
        "raystx.base.sampler": Alias(
            ("raystx.train.args:BatchSamplers,MultiDatasetBatchSamplers",), SAMPLER_MISSING
        ),
        "raystx.base.evaluation": Alias((BASE_EVALUATOR, SEQUENTIAL)),
        "raystx.base.evaluation.evaluator": Alias((BASE_EVALUATOR,)),
        "raystx.base.evaluation.sequential": Alias((SEQUENTIAL,)),
        # one module per class, as in sentence-transformers' old layout
        "raystx.evaluation.SentenceEvaluator": Alias((BASE_EVALUATOR,)),
        "raystx.evaluation.SequentialEvaluator": Alias((SEQUENTIAL,)),
        "raystx.evaluation.SimilarityFunction": Alias((SIMILARITY,), SIMILARITY_MISSING),
        "raystx.sentence_transformer.modules.normalize": Alias(("raystx.models.normalize",)),
    }
    for cls, file in LOSS_FILES.items():
        alias = Alias((f"raystx.losses.{file}",), LOSS_MISSING.get(file, {}))
        table[f"raystx.losses.{cls}"] = alias
        table[f"raystx.sentence_transformer.losses.{file}"] = alias
    for cls, file in EVALUATOR_FILES.items():
        alias = Alias((f"raystx.evaluation.{file}:{cls}",))
        table[f"raystx.evaluation.{cls}"] = alias
        table[f"raystx.sentence_transformer.evaluation.{file}"] = alias
    for cls, file in MODULE_FILES.items():
        missing = TRANSFORMER_MISSING if cls == "Transformer" else {}
        table[f"raystx.models.{cls}"] = Alias((f"raystx.models.{file}:{cls}",), missing)
    for cls in ST6_SENTENCE_MODULES:
        file = MODULE_FILES[cls]
        table[f"raystx.sentence_transformer.modules.{file}"] = Alias((f"raystx.models.{file}:{cls}",))
    for cls in MODULES_NOT_IN_RAYSTX:
        table[f"raystx.models.{cls}"] = Alias((), {cls: LEGACY_MODULE})
    table["raystx.models.Asym"] = table["raystx.models.Router"] = Alias(("raystx.models.router:Asym,Router",))
    for cls, file in DATASET_FILES.items():
        alias = Alias((f"{DATASETS}:{cls}",))
        table[f"raystx.datasets.{cls}"] = alias
        table[f"raystx.sentence_transformer.datasets.{file}"] = alias
    for cls, (file, names) in READER_FILES.items():
        alias = Alias((f"{READERS}:{','.join(names)}",))
        table[f"raystx.readers.{cls}"] = alias
        table[f"raystx.sentence_transformer.readers.{file}"] = alias
    return table


ALIASES: dict[str, Alias] = _build()


# ------------------------------------------------------------------------------------------ names
def public_names(module: types.ModuleType) -> list[str]:
    """``__all__`` without private names, else the public classes/functions defined in ``module`` itself."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return sorted(n for n in names if not n.startswith("_"))
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    )


def _parse(source: str) -> tuple[str, list[str] | None]:
    module, _, names = source.partition(":")
    return module, (names.split(",") if names else None)


def _source_names(source: str) -> list[str]:
    module, names = _parse(source)
    return names if names is not None else public_names(importlib.import_module(module))


# ------------------------------------------------------------------------------------------ modules
class NotProvidedError(ImportError):
    """A sentence-transformers name (or module) that raystx deliberately does not provide; says why.

    An ``ImportError`` (not ``AttributeError``) so that ``from raystx.x import Name`` shows the reason instead of
    Python's generic "cannot import name".
    """


def _not_provided(module: str, names: list[str], reason: str) -> str:
    original = module.replace("raystx", "sentence_transformers", 1)
    return f"{original}.{'/'.join(names)} is not provided by raystx ({module}): {reason}"


class _GuardedModule(types.ModuleType):
    """A module whose classes are not replaced by alias submodules of the same name.

    Importing ``raystx.losses.ContrastiveLoss`` ends with the import system setting attribute ``ContrastiveLoss``
    of ``raystx.losses`` to the new module; the class must stay, as in sentence-transformers.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and f"{self.__name__}.{name}" in ALIASES:
            current = self.__dict__.get(name, _UNSET)
            if current is not _UNSET and not isinstance(current, types.ModuleType):
                return
        super().__setattr__(name, value)


class AliasModule(_GuardedModule):
    """The module object of an alias path: names are fetched from the entry's sources when first asked for."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        entry = ALIASES[self.__name__]
        if name == "__all__":
            value: Any = sorted({n for source in entry.sources for n in _source_names(source)})
        elif name in entry.missing:
            raise NotProvidedError(_not_provided(self.__name__, [name], entry.missing[name]))
        else:
            value = _UNSET
            for source in entry.sources:
                module_name, names = _parse(source)
                if names is not None and name not in names:
                    continue
                if names is None and name not in _source_names(source):
                    continue
                value = getattr(importlib.import_module(module_name), name)
                break
            if value is _UNSET:
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        super().__setattr__(name, value)  # cache
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__all__))


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return AliasModule(
            spec.name,
            f"raystx alias of sentence-transformers' {spec.name.replace('raystx', 'sentence_transformers', 1)}",
        )

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class AliasFinder(importlib.abc.MetaPathFinder):
    """Finds alias paths of ``ALIASES`` (entries not marked ``real``); every other name is left to Python."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = ALIASES.get(fullname)
        if entry is None or entry.real:
            return None
        parent_name, _, child = fullname.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is not None:
            _guard(parent, child)
        # Every path imports (a ported script's import line never fails); a name raystx does not provide raises
        # NotProvidedError with the reason when it is used.
        is_package = any(other.startswith(fullname + ".") for other in ALIASES)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(), is_package=is_package)


def _guard(parent: types.ModuleType, child: str) -> None:
    """Keep ``parent.child`` (a class of the same name, resolved now if lazy) when the submodule is imported."""
    try:
        value = getattr(parent, child)
    except AttributeError:
        return
    if isinstance(value, types.ModuleType):
        return
    parent.__dict__[child] = value
    if not isinstance(parent, _GuardedModule):
        parent.__class__ = _GuardedModule


def missing_name_error(module: str, name: str) -> str | None:
    """The reason ``module.name`` is not provided, for error messages (None if it is not a listed gap)."""
    entry = ALIASES.get(module)
    return entry.missing.get(name) if entry else None


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
