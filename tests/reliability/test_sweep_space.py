"""Sweep search spaces: unknown or misspelt distributions and empty spaces are refused with the list of the
supported distributions, instead of being taken as literal values (a sweep of one point)."""

from __future__ import annotations

import pytest

from raystx.tune.space import SearchSpace, SearchSpaceError

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Sweeps (the search: section)"
SUPPORTED = ("uniform", "loguniform", "int", "choice", "grid")


def _names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    ("tree", "input", "named"),
    [
        (
            {"args.learning_rate": {"normal": [0, 1]}},
            "search: {args.learning_rate: {normal: [0, 1]}}",
            "'normal'",
        ),
        (
            {"args.seed": {"randint": [1, 40]}},
            "search: {args.seed: {randint: [1, 40]}} (Ray Tune's name)",
            "'randint'",
        ),
        (
            {"loss": {"choice": [{"type": "CoSENTLoss", "kwargs": {"scale": {"quniform": [10, 30, 5]}}}]}},
            "a nested {quniform: [10, 30, 5]} inside a choice option",
            "loss[CoSENTLoss].kwargs.scale",
        ),
        (
            {"args.warmup_ratio": {"unifrom": [0, 0.2]}},
            "a misspelt {unifrom: [0, 0.2]}",
            "did you mean 'uniform'",
        ),
        (
            {"args.lr": {"loguniform": [1e-5, 1e-3], "logg": True}},
            "{loguniform: [...], logg: true}",
            "['logg']",
        ),
        (
            {"args.lr": {"uniform": [0, 1], "choice": [1, 2]}},
            "two distributions in one value",
            "one distribution",
        ),
    ],
)
def test_unknown_distributions_are_refused_with_the_supported_list(catalogue, tree, input, named):
    message = catalogue.raises(SearchSpaceError, lambda: SearchSpace(tree), input=input)
    _names(message, named, *SUPPORTED)
    assert message.startswith(f"search {next(iter(tree))}") or "loss[" in message


@pytest.mark.parametrize(
    ("tree", "input"),
    [
        ({}, "search: {} (an empty search space)"),
        ({"args.learning_rate": 0.001}, "search with constants only"),
    ],
)
def test_a_space_with_nothing_to_search_is_refused(catalogue, tree, input):
    message = catalogue.raises(SearchSpaceError, lambda: SearchSpace(tree), input=input)
    _names(message, "at least one distribution", *SUPPORTED)


def test_literal_dicts_and_supported_distributions_still_pass():
    space = SearchSpace(
        {
            "args.learning_rate": {"loguniform": [1e-5, 1e-3]},
            "args.num_train_epochs": {"int": [1, 3], "step": 1},
            "model.kwargs": {"init": [0, 1], "cache": {"dir": "x"}},  # literal values that look nothing alike
            "loss": {"choice": [{"type": "MultipleNegativesRankingLoss", "kwargs": {"scale": 20}}]},
        }
    )
    assert sorted(space.distributions) == ["args.learning_rate", "args.num_train_epochs", "loss"]
    assignments, _ = space.representative()
    assert assignments["model.kwargs"] == {"init": [0, 1], "cache": {"dir": "x"}}


def test_a_sweep_config_with_an_unknown_distribution_fails_in_the_loader(tmp_path, tiny_bert_dir):
    from raystx.config import ConfigError
    from raystx.tune.spec import sweep_from_dict

    raw = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "search": {"args.learning_rate": {"normal": [0, 1]}},
    }
    with pytest.raises(ConfigError, match=r"unknown distribution 'normal'.*Supported distributions"):
        sweep_from_dict(raw, tmp_path)
