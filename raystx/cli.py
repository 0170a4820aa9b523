"""``raystx`` command line: validate | train | eval | encode over a YAML experiment config.

    raystx validate CONFIG.yaml [--set key=value ...]   check config, data and losses (no worker starts)
    raystx train CONFIG.yaml [--set ...] [--resume]     train on Ray; saves the final model to save_model_to
    raystx tune SWEEP.yaml [--set ...] [--resume]       sweep the config's `search:` space with Ray Tune + Optuna
    raystx eval CONFIG.yaml --model PATH                run the config's evaluator on a saved model
    raystx encode MODEL_PATH INPUT... -o OUT_DIR         embed a text column on Ray workers; writes Parquet
    raystx evaluate EVAL.yaml [--set ...]               evaluators from a config, sharded on Ray workers
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

            merge = cfg.model.adapter is not None and cfg.model.adapter.merge_on_save
            target = save_model(
                trainer.model,
                cfg.save_model_to or join(trainer.args.output_dir, "final"),
                **({"merge_adapters": True} if merge else {}),
            )
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
    inputs: Annotated[
        list[str], typer.Argument(help="input files/dirs/globs (csv, tsv, jsonl, parquet, txt)")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="output directory of Parquet files")],
    text_column: Annotated[str, typer.Option(help="the column holding the texts (.txt: 'text')")] = "text",
    id_column: Annotated[str | None, typer.Option(help="an input column copied to the output")] = None,
    role: Annotated[str, typer.Option(help="plain | query | document (their prompts)")] = "plain",
    prompt: Annotated[str | None, typer.Option(help="prompt text put before every input")] = None,
    prompt_name: Annotated[str | None, typer.Option(help="one of the model's prompts")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the embeddings")] = False,
    batch_size: int = 32,
    num_workers: Annotated[int, typer.Option(help="model replicas (Ray actors)")] = 1,
    cpus_per_worker: Annotated[int, typer.Option(help="CPUs (torch threads) per replica")] = 1,
    gpus_per_worker: Annotated[int, typer.Option(help="0 or 1 GPU per replica")] = 0,
) -> None:
    """Embed the texts of INPUTS on NUM_WORKERS Ray model replicas and write Parquet (id, embedding)."""
    from raystx.infer.bulk import encode_to_parquet

    if gpus_per_worker not in (0, 1):
        _fail(ValueError(f"--gpus-per-worker must be 0 or 1, got {gpus_per_worker}"))
    try:
        summary = encode_to_parquet(
            inputs, model, output, text_column=text_column, id_column=id_column, role=role, prompt=prompt,
            prompt_name=prompt_name, normalize_embeddings=normalize, batch_size=batch_size,
            num_workers=num_workers, cpus_per_worker=cpus_per_worker, use_gpu=bool(gpus_per_worker),
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2))


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
