"""A typed config from end to end (issue 19): duplicate YAML keys, ``args`` typed as the training arguments'
fields, numeric ranges, loss/evaluator kwargs against their constructors. Each bad input fails in
``raystx validate`` with exit status 2, naming the key, before the model loads (the model path used here does
not exist, so reaching the model would give another error) and within seconds. No Ray."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_sentences
from typer.testing import CliRunner

from raystx.cli import app
from raystx.config import ConfigError, load_config, parse_yaml

REPO = Path(__file__).resolve().parents[1]
FAST_S = 5.0  # the config checks run before any model, data or Ray; generous for a loaded CI machine
KWARGS_S = 30.0  # issue 19's bound: checking kwargs imports the loss/evaluator classes (torch) once


def _pairs(path: Path, n: int = 32) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "score"])
        for i, (a, b) in enumerate(zip(make_sentences(n, 1), make_sentences(n, 2))):
            writer.writerow([a, b, (i % 6) * 1.0])
    return path


def _raw(tmp_path: Path, model: str) -> dict:
    data = str(_pairs(tmp_path / "pairs.csv"))
    return {
        "model": {"name_or_path": model, "max_seq_length": 32},
        "train_data": {"pairs": {"path": data, "score_scale": 5.0}},
        "loss": {"type": "CoSENTLoss", "kwargs": {"scale": 20.0}},
        "evaluator": {
            "type": "EmbeddingSimilarityEvaluator",
            "path": data,
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "score_scale": 5.0,
            "kwargs": {"name": "dev"},
        },
        "args": {"output_dir": str(tmp_path / "out"), "max_steps": 2, "per_device_train_batch_size": 8},
        "scaling": {"num_workers": 2},
    }


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _validate(path: Path, *sets: str) -> tuple[int, str, float]:
    args = ["validate", str(path)]
    for item in sets:
        args += ["--set", item]
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, time.perf_counter() - started


def test_duplicate_keys_fail_naming_both_lines(tmp_path):
    text = "model: {name_or_path: m}\nargs:\n  output_dir: /tmp/x\n  max_steps: 3\nloss: {type: CoSENTLoss}\n"
    text += "args:\n  seed: 1\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "duplicate key 'args' on line 6 (first on line 2)" in message
    nested = tmp_path / "nested.yaml"
    nested.write_text("args:\n  seed: 1\n  seed: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duplicate key 'seed' on line 3 \(first on line 2\)"):
        load_config(nested)
    # a merge key followed by an explicit key is an override, not a duplicate
    assert parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")["other"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    ("override", "key", "needle"),
    [
        ("args.per_device_train_batch_size=eight", "args.per_device_train_batch_size", "valid integer"),
        ("args.num_train_epochs=[1]", "args.num_train_epochs", "valid number"),
        ("args.per_device_train_batch_size=0", "args.per_device_train_batch_size", "greater than 0"),
        ("args.learning_rate=-1e-5", "args.learning_rate", "greater than or equal to 0"),
        ("args.warmup_ratio=1.5", "args.warmup_ratio", "less than 1"),
        ("args.eval_strategy=sometimes", "args", "eval_strategy='sometimes' is not valid"),
        ("args.shuffle_window=-2", "args", "shuffle_window must be a number of shards >= 1, or None"),
        ("args.shuffle_window=four", "args.shuffle_window", "valid integer"),
        ("args.shuffle_block_size=0", "args", "shuffle_block_size must be >= 1 rows (got 0)"),
        ("model.max_seq_length=-1", "model.max_seq_length", "greater than 0"),
        ("train_data.pairs.score_scale=0", "train_data.pairs.score_scale", "greater than 0"),
        ("train_data.pairs.limit=0", "train_data.pairs.limit", "greater than 0"),
        ("scaling.num_workers=0", "scaling.num_workers", "greater than 0"),
        ("evaluator.score_scale=-5", "evaluator.score_scale", "greater than 0"),
    ],
)
def test_mistyped_or_out_of_range_values_fail_in_validate_naming_the_key(tmp_path, override, key, needle):
    path = _write(tmp_path, _raw(tmp_path, str(tmp_path / "no-model-here")))
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert f"  - {key}: " in str(info.value) and needle in str(info.value)
    code, output, seconds = _validate(path, override)
    assert code == 2, output
    assert f"{key}: " in output and needle in output
    assert "no-model-here" not in output  # failed before the model
    assert seconds < FAST_S


def test_typed_args_are_converted_to_the_fields_types(tmp_path):
    path = _write(tmp_path, _raw(tmp_path, "m"))
    cfg = load_config(path, ["args.per_device_train_batch_size='16'", "args.learning_rate=3e-5"])
    assert cfg.args["per_device_train_batch_size"] == 16 and isinstance(
        cfg.args["per_device_train_batch_size"], int
    )
    assert set(cfg.args) == {"output_dir", "max_steps", "per_device_train_batch_size", "learning_rate"}


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("loss.kwargs.scale=big", ["loss CoSENTLoss", "scale='big' is not a float"]),
        ("loss.kwargs.scael=20", ["loss CoSENTLoss", "unknown argument 'scael'", "'scale'"]),
        ("loss.kwargs.model=x", ["loss CoSENTLoss", "'model' is set by raystx itself"]),
        (
            "evaluator.kwargs.nmae=dev",
            ["evaluator EmbeddingSimilarityEvaluator", "unknown argument 'nmae'", "'name'"],
        ),
        ("evaluator.columns.sentence1=sentence1", ["evaluator EmbeddingSimilarityEvaluator", "'sentence1'"]),
        ("loss.type=CoSENTLos", ["unknown loss type 'CoSENTLos'", "CoSENTLoss"]),
    ],
)
def test_loss_and_evaluator_kwargs_are_checked_against_their_signatures(tmp_path, override, needles):
    path = _write(tmp_path, _raw(tmp_path, str(tmp_path / "no-model-here")))
    code, output, seconds = _validate(path, override)
    assert code == 2, output
    for needle in needles:
        assert needle in output, (needle, output)
    assert "no-model-here" not in output  # checked before the model loads
    assert seconds < KWARGS_S


def test_a_wrapped_loss_kwargs_are_checked_too(tmp_path):
    from raystx.config import LossConfig
    from raystx.train.build import loss_kwargs

    spec = LossConfig(
        type="MatryoshkaLoss",
        kwargs={"matryoshka_dims": [32, 16]},
        wrap={"type": "CoSENTLoss", "kwargs": {"scale": "big"}},
    )
    with pytest.raises(ConfigError, match="loss CoSENTLoss: scale='big' is not a float"):
        loss_kwargs(spec)


def test_validate_checks_a_good_config_without_importing_ray(tmp_path, tiny_bert_dir):
    path = _write(tmp_path, _raw(tmp_path, str(tiny_bert_dir)))
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from raystx.cli import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(path)!r}])\n"
        "print(r.output)\n"
        "print('EXIT', r.exit_code, 'RAY_IMPORTED', 'ray' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert "EXIT 0 RAY_IMPORTED False" in proc.stdout, proc.stdout + proc.stderr
    assert "dataset pairs: 32 rows, inputs ['sentence1', 'sentence2'], label score" in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing written


def test_validate_reads_rename_limit_and_score_scale_like_training(tmp_path, tiny_bert_dir):
    from raystx.data.local import Transform, scan_source

    source = scan_source(
        "pairs",
        str(_pairs(tmp_path / "p.csv")),
        ["a", "b", "score"],
        Transform(rename={"sentence1": "a", "sentence2": "b"}, limit=10, score_scale=5.0),
    )
    assert source.num_rows == 10 and source.input_columns == ["a", "b"] and source.label_column == "score"
    rows = source.peek([9, 0, 4])
    assert rows["a"] == [make_sentences(32, 1)[i] for i in (9, 0, 4)]
    assert rows["score"] == pytest.approx([(i % 6) / 5.0 for i in (9, 0, 4)], abs=1e-6)
    with pytest.raises(IndexError):
        source.peek([10])
