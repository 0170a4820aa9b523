"""The job entry points (``jobs/launch.py``): how ``RAYSTX_OVERRIDES`` and ``--set`` become ``raystx``
arguments and how the config loader fills ``${VAR}`` values from the environment, checked through the real
loader; and the scripts' exit statuses for bad input (no Ray: a bad config fails before anything starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raystx.config import ConfigError, expand_env, load_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobs.launch import OverridesError, cli_args  # noqa: E402

CONFIG = """
model: {name_or_path: "${MODEL_DIR}/m"}
train_data:
  d: {path: "${DATA}/train.tsv", columns: [a, b]}
loss: {type: MultipleNegativesRankingLoss}
args: {output_dir: "${OUT:-/tmp/default-out}/run", num_train_epochs: 1}
scaling: {num_workers: 1, use_gpu: false}
run: {storage_path: "${STORAGE:-}", name: "literal"}
"""


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _sets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def _load(config: Path, args: list[str]):
    assert args[:2] == ["train", str(config)]
    return load_config(config, _sets(args))


def _env(monkeypatch, environ: dict[str, str]) -> None:
    for name in ("MODEL_DIR", "DATA", "OUT", "STORAGE", "RAYSTX_OVERRIDES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def test_expand_reads_variables_and_defaults():
    env = {"A": "x", "EMPTY": ""}
    assert expand_env("${A}/y/${B:-z}", env) == "x/y/z"
    assert expand_env("${EMPTY:-d}", env) == "d"  # empty counts as unset when a default is given
    assert (
        expand_env("${EMPTY}", env) is None
    )  # a whole-value reference takes its YAML meaning: empty is null
    assert expand_env("no refs, $A stays", env) == "no refs, $A stays"
    with pytest.raises(ConfigError, match=r"run\.x: .*needs the environment variable B"):
        expand_env({"run": {"x": "${B}"}}, env)


def test_expanded_values_quote_paths_and_keep_whole_values_typed():
    raw = {
        "a": {"p": "${D}/f.tsv", "flag": "${F}", "n": "${N}", "s": "${S:-}", "plain": "x"},
        "l": ["${D}", 3],
    }
    out = expand_env(raw, {"D": "/d: x", "F": "true", "N": "4"})
    assert out == {
        "a": {"p": "/d: x/f.tsv", "flag": True, "n": 4, "s": None, "plain": "x"},
        "l": ["/d: x", 3],
    }


def test_keys_a_later_override_replaces_need_no_variable(config, monkeypatch):
    _env(monkeypatch, {"DATA": "/d"})  # MODEL_DIR unset, but --set replaces the only key that needs it
    cfg = load_config(
        config, _sets(cli_args("train", ["--config", str(config), "--set", "model.name_or_path=/m"]))
    )
    assert cfg.model.name_or_path == "/m" and cfg.train_data["d"].path == "/d/train.tsv"
    with pytest.raises(ConfigError, match=r"model\.name_or_path.*MODEL_DIR"):
        load_config(config, _sets(cli_args("train", ["--config", str(config)])))


def test_cli_args_fill_the_config_and_apply_later_overrides_last(config, monkeypatch):
    environ = {
        "MODEL_DIR": "/models",
        "DATA": "/data dir",
        "STORAGE": "s3://bucket/runs",
        "RAYSTX_OVERRIDES": "scaling.num_workers=4 'run.name=from env'",
    }
    _env(monkeypatch, environ)
    args = cli_args("train", ["--config", str(config), "--set", "scaling.num_workers=2", "--resume"])
    assert args[-1] == "--resume"
    cfg = _load(config, args[:-1])
    assert cfg.model.name_or_path == "/models/m"
    assert cfg.train_data["d"].path == "/data dir/train.tsv"
    assert cfg.args["output_dir"] == "/tmp/default-out/run"
    assert cfg.run.storage_path == "s3://bucket/runs"
    assert cfg.run.name == "from env"  # RAYSTX_OVERRIDES beats the file
    assert cfg.scaling.num_workers == 2  # --set beats RAYSTX_OVERRIDES


def test_cli_args_unset_storage_is_null_and_gpu_comes_from_raystx_overrides(config, monkeypatch):
    _env(monkeypatch, {"MODEL_DIR": "/m", "DATA": "/d", "RAYSTX_OVERRIDES": "scaling.use_gpu=true"})
    cfg = _load(config, cli_args("train", ["--config", str(config)]))
    assert cfg.run.storage_path is None
    assert cfg.scaling.use_gpu is True


def test_cli_args_for_eval_and_passthrough_options(config):
    environ = {"MODEL_DIR": "/m", "DATA": "/d"}
    args = cli_args("eval", ["--config", str(config), "--model", "/trained"], environ)
    assert args[-2:] == ["--model", "/trained"]
    args = cli_args("tune", ["--config", str(config), "--num-samples", "8"], environ)
    assert args[0] == "tune" and args[-2:] == ["--num-samples", "8"]
    with pytest.raises(SystemExit):  # --model is required for eval
        cli_args("eval", ["--config", str(config)], environ)


def test_cli_args_reject_malformed_raystx_overrides(config):
    with pytest.raises(OverridesError, match="RAYSTX_OVERRIDES"):
        cli_args(
            "train",
            ["--config", str(config)],
            {"RAYSTX_OVERRIDES": "just-a-word", "MODEL_DIR": "m", "DATA": "d"},
        )


def _run(script: str, *argv: str, **env_vars: str) -> subprocess.CompletedProcess:
    """``python jobs/{script}.py ARGV`` with this environment plus ``env_vars`` (and no RAYSTX_OVERRIDES)."""
    env = {k: v for k, v in os.environ.items() if k not in {"RAYSTX_OVERRIDES", "MODEL_DIR", "DATA"}}
    return subprocess.run(
        [sys.executable, f"jobs/{script}.py", *argv],
        cwd=REPO,
        env={**env, **env_vars},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_train_script_exits_2_naming_the_bad_key(config):
    proc = _run("train", "--config", str(config), "--set", "args.learning_rat=0.1", MODEL_DIR="/m", DATA="/d")
    assert proc.returncode == 2, proc.stderr
    assert "unknown training argument(s) ['learning_rat']" in proc.stderr


def test_train_script_exits_2_naming_the_missing_variable(config):
    proc = _run("train", "--config", str(config), DATA="/d")
    assert proc.returncode == 2
    assert "model.name_or_path" in proc.stderr and "MODEL_DIR" in proc.stderr


SWEEP = """
model: {name_or_path: "${MODEL_DIR}/m"}
train_data:
  d: {path: "${DATA}/pairs.csv"}
loss: {type: MultipleNegativesRankingLoss}
args: {output_dir: "${DATA}/out", max_steps: 2}
search:
  args.learning_rate: {grid: [1.0e-5, 1.0e-4]}
tune: {num_samples: 1, searcher: grid, bogus_setting: 1}
"""


def test_tune_script_forwards_to_raystx_tune_which_expands_the_environment(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP, encoding="utf-8")
    proc = _run("tune", "--config", str(sweep), MODEL_DIR="/m")
    assert proc.returncode == 2, proc.stderr
    assert f"raystx tune {sweep}" in proc.stderr  # the command line the job runs
    assert "train_data.d.path" in proc.stderr and "DATA" in proc.stderr  # the unset variable, by key
    proc = _run("tune", "--config", str(sweep), MODEL_DIR="/m", DATA=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "needs the environment variable" not in proc.stderr  # filled in this time ...
    assert "tune.bogus_setting: unknown key" in proc.stderr  # ... so the sweep's own check speaks
