"""``raystx`` command line: validate | train | eval | encode over a YAML experiment config.

    raystx validate CONFIG.yaml [--set key=value ...]   check config, data and losses (no worker starts)
    raystx train CONFIG.yaml [--set ...] [--resume]     train on Ray; saves the final model to save_model_to
    raystx tune SWEEP.yaml [--set ...] [--resume]       sweep the config's `search:` space with Ray Tune + Optuna
    raystx eval CONFIG.yaml --model PATH                run the config's evaluator on a saved model
    raystx evaluate EVAL.yaml [--set ...]               evaluators from a config, sharded on Ray workers
    raystx encode MODEL_PATH INPUT.txt OUTPUT.npy       embed one sentence per line
    raystx mine CONFIG.yaml [--set ...]                 mine hard negatives on Ray; writes Parquet

Exit status is non-zero on any failure, so ``ray job submit`` reports the training's own status.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Train and tune sentence-embedding models on Ray."
)

SetOption = Annotated[list[str] | None, typer.Option("--set", help="override a config key: a.b=value")]


def _load(config: Path, overrides: list[str] | None):
    from raystx.config import ConfigError, load_config

    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(exc: BaseException) -> None:
    """Report ``exc`` and exit: status 2 for a bad config (``ConfigError``), 1 for anything else."""
    from raystx.config import ConfigError

    if isinstance(exc, ConfigError):
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
    raise typer.Exit(1) from None


@app.command()
def validate(config: Path, set_: SetOption = None) -> None:
    """Check the config, the datasets' schemas and samples against the losses, and the evaluator (no Ray)."""
    cfg = _load(config, set_)
    from raystx.train.preflight import check_config

    try:
        sources = check_config(cfg)
    except Exception as exc:  # noqa: BLE001 - shown to the user with its type
        _fail(exc)
    for name, src in sources.items():
        typer.echo(
            f"dataset {name}: {src.num_rows} rows, inputs {src.input_columns}, label {src.label_column}"
        )
    typer.echo("config OK")


@app.command()
def train(
    config: Path,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the run's latest checkpoint")
    ] = False,
) -> None:
    """Train on Ray and save the final model to `save_model_to` (or OUTPUT_DIR/final)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = _load(config, set_)
    from raystx.train.build import build_trainer
    from raystx.train.signals import RunInterrupted, interrupt_handlers

    try:
        with interrupt_handlers(cfg.args.get("output_dir") if isinstance(cfg.args, dict) else None):
            trainer = build_trainer(cfg, resume=resume)
            out = trainer.train()
            from raystx.train.storage import join, save_model

            target = save_model(trainer.model, cfg.save_model_to or join(trainer.args.output_dir, "final"))
    except RunInterrupted as exc:  # SIGTERM -> 143, SIGINT -> 130, with the resume hint
        typer.echo(f"interrupted: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    summary = {"global_step": out.global_step, "training_loss": out.training_loss, "model": str(target)}
    if trainer.evaluator is not None:
        summary["eval"] = trainer.evaluator(trainer.model)
    typer.echo(json.dumps(summary, indent=2, default=float))


@app.command("tune")
def tune_command(
    config: Path,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue an interrupted sweep (finished trials are kept)")
    ] = False,
) -> None:
    """Sweep hyperparameters/losses (Ray Tune + Optuna) over the config's `search:` and `tune:` sections."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from raystx.tune import run_sweep

    try:
        result = run_sweep(config, overrides=set_ or [], resume=resume)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    typer.echo(result.summary())


@app.command("eval")
def evaluate(
    config: Path,
    model: Annotated[str, typer.Option(help="model directory to evaluate")],
    set_: SetOption = None,
) -> None:
    """Run the config's evaluator on a saved model and print its metrics as JSON."""
    cfg = _load(config, set_)
    if cfg.evaluator is None:
        typer.echo("error: the config has no evaluator section", err=True)
        raise typer.Exit(2)
    from raystx.models import SentenceTransformer
    from raystx.train.build import build_evaluator

    try:
        metrics = build_evaluator(cfg.evaluator)(SentenceTransformer(model))
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    typer.echo(json.dumps(metrics, indent=2, default=float))


@app.command("evaluate")
def evaluate_job(config: Path, set_: SetOption = None) -> None:
    """Run an evaluation config's evaluators on a saved model across Ray workers (sharded encoding); writes
    metrics.json and metrics.md to its output_dir and prints the JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from raystx.config import ConfigError
    from raystx.evaljob import build_evaluators, load_eval_config, run_evaluation

    try:
        cfg = load_eval_config(config, set_ or [])
        evaluators = build_evaluators(cfg)  # every evaluator's data and kwargs checked before Ray starts
    except ConfigError as exc:
        _fail(exc)
    try:
        report = run_evaluation(cfg, evaluators)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    typer.echo(json.dumps(report, indent=2))


@app.command()
def encode(
    model: str,
    input_file: Path,
    output_file: Path,
    batch_size: int = 32,
    normalize: bool = False,
) -> None:
    """Embed one sentence per line of INPUT_FILE and write a .npy matrix."""
    import numpy as np

    from raystx.models import SentenceTransformer

    lines = [
        line.rstrip("\n") for line in input_file.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    emb = SentenceTransformer(model).encode(lines, batch_size=batch_size, normalize_embeddings=normalize)
    np.save(output_file, emb)
    typer.echo(f"wrote {emb.shape[0]} x {emb.shape[1]} embeddings to {output_file}")


@app.command()
def mine(config: Path, set_: SetOption = None) -> None:
    """Mine hard negatives for (anchor, positive) pairs on Ray workers and write them as Parquet."""
    from raystx.config import ConfigError
    from raystx.infer.config import load_mine_config, run_mine

    try:
        cfg = load_mine_config(config, set_ or [])
    except ConfigError as exc:
        _fail(exc)
    try:
        result = run_mine(cfg)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    summary = {"rows": len(result), "columns": result.column_names, "output_path": cfg.output_path}
    typer.echo(json.dumps(summary, indent=2))


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
