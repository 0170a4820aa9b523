"""Optional integrations are extras: asking for one whose package is missing fails naming the extra to install,
and pyproject.toml declares each extra (the dev extra pulls those the test suite uses)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.callbacks import integration_callbacks
from raystx.train.integrations import check_report_to
from raystx.tune.objective import Objective
from raystx.tune.plots import write_plots

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


@pytest.mark.parametrize("name", ["wandb", "tensorboard", "codecarbon", "mlflow"])
def test_missing_report_to_package_names_the_extra(name, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, name, None)  # import <name> -> ImportError
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to=[name])
    expected = (
        f"report_to='{name}' needs the {name} package, which is not installed: pip install 'raystx[{name}]'"
    )
    with pytest.raises(ValueError) as driver_side:
        check_report_to(args)
    assert expected in str(driver_side.value)
    with pytest.raises(ValueError) as worker_side:
        integration_callbacks(args)
    assert expected in str(worker_side.value)
    assert any(dep.split(">")[0] == name for dep in EXTRAS[name])


def test_every_missing_integration_is_listed_in_one_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), report_to=["wandb", "nope", "codecarbon"]
    )
    with pytest.raises(ValueError) as err:
        check_report_to(args)
    lines = str(err.value).splitlines()
    assert lines[0] == "Invalid report_to:" and len(lines) == 4
    assert (
        "raystx[wandb]" in lines[1]
        and "'nope' is not supported" in lines[2]
        and "raystx[codecarbon]" in lines[3]
    )


def test_missing_matplotlib_skips_the_plots_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = write_plots([], Objective(("eval_dev_spearman_cosine",), ("max",)), tmp_path)
    assert set(out) == {"optimization_history", "param_importances"}
    assert all(
        v.startswith("skipped: matplotlib is not installed") and "raystx[plots]" in v for v in out.values()
    )
    assert EXTRAS["plots"] == ["matplotlib>=3.7"]


def test_core_dependencies_leave_the_integrations_to_extras_and_dev_pulls_what_tests_use():
    core = {dep.split(">")[0].split("[")[0].lower() for dep in PYPROJECT["project"]["dependencies"]}
    assert not core & {"wandb", "tensorboard", "codecarbon", "matplotlib", "mlflow", "model2vec"}
    assert {"accelerate", "rich", "jinja2"} <= core
    assert "raystx[wandb,tensorboard,mlflow,plots,model2vec,faiss,peft]" in EXTRAS["dev"]
    assert "peft" not in core and EXTRAS["peft"] == ["peft>=0.21"]
    assert EXTRAS["model2vec"] == ["model2vec>=0.4"]
