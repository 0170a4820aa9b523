"""The job entry points (``jobs/launch.py``, ``jobs/config_env.py``): how ``${VAR}`` values, ``RAYSTX_OVERRIDES``
and ``--set`` become ``raystx`` arguments, checked through the real config loader; and the scripts' exit
statuses for bad input (no Ray: a bad config fails before anything starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raystx.config import load_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobs.config_env import ConfigEnvError, env_overrides, expand  # noqa: E402
from jobs.launch import cli_args, cli_commands  # noqa: E402

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


def test_expand_reads_variables_and_defaults():
    env = {"A": "x", "EMPTY": ""}
    assert expand("${A}/y/${B:-z}", env) == "x/y/z"
    assert expand("${EMPTY:-d}", env) == "d"  # empty counts as unset when a default is given
    assert expand("${EMPTY}", env) == ""
    assert expand("no refs, $A stays", env) == "no refs, $A stays"
    with pytest.raises(ConfigEnvError, match=r"run\.x: .*needs the environment variable B"):
        expand("${B}", env, key="run.x")


def test_env_overrides_quote_paths_and_keep_whole_values_typed():
    raw = {
        "a": {"p": "${D}/f.tsv", "flag": "${F}", "n": "${N}", "s": "${S:-}", "plain": "x"},
        "l": ["${D}", 3],
    }
    items = env_overrides(raw, {"D": "/d: x", "F": "true", "N": "4"})
    assert items == ['a.p="/d: x/f.tsv"', "a.flag=true", "a.n=4", "a.s=", 'l=["/d: x", 3]']


def test_env_overrides_skip_keys_a_later_override_replaces():
    raw = {"train_data": {"d": {"path": "${UNSET}/x"}}, "model": {"name_or_path": "${ALSO_UNSET}"}}
    assert env_overrides(raw, {}, overridden=["train_data.d.path", "model"]) == []
    with pytest.raises(ConfigEnvError, match="UNSET"):
        env_overrides(raw, {}, overridden=["model"])


def test_cli_args_fill_the_config_and_apply_later_overrides_last(config):
    environ = {
        "MODEL_DIR": "/models",
        "DATA": "/data dir",
        "STORAGE": "s3://bucket/runs",
        "RAYSTX_OVERRIDES": "scaling.num_workers=4 'run.name=from env'",
    }
    args = cli_args("train", ["--config", str(config), "--set", "scaling.num_workers=2", "--resume"], environ)
    assert args[-1] == "--resume"
    cfg = _load(config, args[:-1])
    assert cfg.model.name_or_path == "/models/m"
    assert cfg.train_data["d"].path == "/data dir/train.tsv"
    assert cfg.args["output_dir"] == "/tmp/default-out/run"
    assert cfg.run.storage_path == "s3://bucket/runs"
    assert cfg.run.name == "from env"  # RAYSTX_OVERRIDES beats the file
    assert cfg.scaling.num_workers == 2  # --set beats RAYSTX_OVERRIDES


def test_cli_args_unset_storage_is_null_and_gpu_comes_from_raystx_overrides(config):
    environ = {"MODEL_DIR": "/m", "DATA": "/d", "RAYSTX_OVERRIDES": "scaling.use_gpu=true"}
    cfg = _load(config, cli_args("train", ["--config", str(config)], environ))
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
    with pytest.raises(ConfigEnvError, match="RAYSTX_OVERRIDES"):
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


def test_tune_script_says_when_raystx_has_no_tune_command():
    proc = _run("tune", "--config", "jobs/configs/train.yaml", "--set", "train_data.stsb.path=/nowhere")
    if "tune" in cli_commands():  # once `raystx tune` exists, the script forwards to it
        assert "no `raystx tune` command" not in proc.stderr
    else:
        assert proc.returncode == 2
        assert "this raystx has no `raystx tune` command yet" in proc.stderr
