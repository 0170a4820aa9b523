"""Every module path of the alias table imports and offers the names sentence-transformers has at that path.

The oracle path is the raystx path with ``raystx`` replaced by ``sentence_transformers``. For each entry the
sentence-transformers names raystx does not offer must be exactly the entry's ``missing`` list, and each of
those raises an error that gives the reason.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings

import pytest

from raystx._aliases import ALIASES, public_names

# Deprecated sentence-transformers paths deliberately not in the table (not SentenceTransformer training).
NOT_ALIASED_PREFIXES = (
    "sentence_transformers.cross_encoder",
    "sentence_transformers.sparse_encoder",
    "sentence_transformers.peft_mixin",
    "sentence_transformers.models.tokenizer",
)


def _oracle(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(path.replace("raystx", "sentence_transformers", 1))


def _has_children(path: str) -> bool:
    return any(other.startswith(path + ".") for other in ALIASES)


@pytest.mark.parametrize("path", sorted(ALIASES))
def test_alias_path_matches_sentence_transformers(path: str) -> None:
    entry = ALIASES[path]
    oracle = set(public_names(_oracle(path)))
    module = importlib.import_module(path)  # every path imports, even one of which nothing is provided
    ours = set(public_names(module))
    assert oracle - ours == set(entry.missing), f"{path}: names missing vs the table's list"
    assert not set(entry.missing) & ours
    st_module = _oracle(path)
    for name in sorted(oracle & ours):
        value, reference = getattr(module, name), getattr(st_module, name)
        assert inspect.isclass(value) == inspect.isclass(reference), f"{path}.{name}: class vs function"
        assert callable(value) == callable(reference), f"{path}.{name}"
    for name, reason in entry.missing.items():
        with pytest.raises((ImportError, AttributeError)) as info:
            getattr(module, name)
        if not entry.real:
            assert reason in str(info.value)


def test_table_covers_every_deprecated_training_path() -> None:
    from sentence_transformers.util.deprecated_import import DEPRECATED_MODULE_PATHS

    wanted = {
        path.replace("sentence_transformers", "raystx", 1)
        for path in DEPRECATED_MODULE_PATHS
        if not path.startswith(NOT_ALIASED_PREFIXES)
    }
    assert wanted - set(ALIASES) == set()


def test_submodule_import_keeps_the_class_on_its_parent() -> None:
    import raystx.losses.ContrastiveLoss  # noqa: F401
    from raystx.losses.ContrastiveLoss import SiameseDistanceMetric

    import raystx
    import raystx.losses

    assert inspect.isclass(raystx.losses.ContrastiveLoss)
    assert raystx.losses.ContrastiveLoss.__module__ == "raystx.losses.contrastive"
    assert SiameseDistanceMetric is raystx.losses.SiameseDistanceMetric
    import raystx.LoggingHandler  # noqa: F401
    import raystx.SentenceTransformer  # noqa: F401

    assert inspect.isclass(raystx.LoggingHandler) and inspect.isclass(raystx.SentenceTransformer)


def test_six_x_paths_are_the_same_objects() -> None:
    from raystx.sentence_transformer.losses import MultipleNegativesRankingLoss
    from raystx.sentence_transformer.losses.multiple_negatives_ranking import (
        MultipleNegativesRankingLoss as FromFile,
    )
    from raystx.training_args import BatchSamplers

    import raystx.losses
    from raystx.train.args import BatchSamplers as Real

    assert MultipleNegativesRankingLoss is raystx.losses.MultipleNegativesRankingLoss is FromFile
    assert BatchSamplers is Real


def test_aliases_import_nothing_heavy() -> None:
    code = (
        "import sys, raystx; from raystx.training_args import BatchSamplers; import raystx.losses.CoSENTLoss; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
