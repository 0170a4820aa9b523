"""Experiment tracking for ``report_to``: TensorBoard, Weights & Biases, MLflow and CodeCarbon callbacks.

``INTEGRATIONS`` maps each ``report_to`` name to a factory ``args -> TrainerCallback``;
``integration_callbacks(args)`` builds them inside the rank-0 worker, whose loop calls
``on_train_begin / on_log / on_evaluate / on_save / on_train_end``. ``check_report_to(args)`` runs the same
checks on the driver (unknown names, missing packages) so that a bad ``report_to`` fails before any worker.

Metric names follow transformers' integrations: ``loss`` is logged as ``train/loss``, ``eval_x`` as
``eval/x`` (TensorBoard, W&B; MLflow keeps the logged names, as transformers' ``MLflowCallback`` does); the x axis
is ``state.global_step``.

Secrets never reach a tracker: ``public_config(args)`` drops fields whose names look secret and masks the
value of every environment variable whose name contains TOKEN, KEY, SECRET or PASSWORD (``raystx.secrets``).
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from raystx.secrets import is_secret_name, redact_value
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer_callback import TrainerCallback, TrainerState

logger = logging.getLogger("raystx.train")

_SKIP_LOG_KEYS = ("step", "done")


def require_package(integration: str, package: str) -> None:
    """Raise ``ValueError`` naming the ``raystx[...]`` extra when ``package`` (needed by the ``report_to``
    integration ``integration``) cannot be imported; the extras are declared in pyproject.toml."""
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ValueError(
            f"report_to={integration!r} needs the {package} package, which is not installed: "
            f"pip install 'raystx[{integration}]' (or pip install {package})"
        ) from exc


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a config value (enums by value, unknown objects as ``str``)."""
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


def public_config(args: SentenceTransformerTrainingArguments) -> dict[str, Any]:
    """The training arguments as a flat dict safe to send to a tracker (no secret fields or values)."""
    config = {k: _plain(v) for k, v in args.to_dict().items() if not is_secret_name(k)}
    return redact_value(config)


def rewrite_logs(logs: Mapping[str, Any]) -> dict[str, float]:
    """Numeric log entries renamed for trackers: ``eval_x`` -> ``eval/x``, anything else -> ``train/x``.

    ``step`` (the x axis) and non-numeric values are dropped.
    """
    out: dict[str, float] = {}
    for key, value in logs.items():
        if key in _SKIP_LOG_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.startswith("eval_"):
            out["eval/" + key[len("eval_") :]] = float(value)
        else:
            out["train/" + key] = float(value)
    return out


def _run_name(args: SentenceTransformerTrainingArguments) -> str:
    if args.run_name:
        return args.run_name
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _safe_dir_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


# ------------------------------------------------------------------------------------------------ trackers
class _TrackerCallback(TrainerCallback):
    """A tracker started lazily (at train begin, or at the first log) that receives the renamed numeric logs.

    Subclasses implement ``_start(args)`` (returns the tracker handle, created once) and
    ``_write(values, step)``.
    """

    handle: Any = None

    def _start(self, args: SentenceTransformerTrainingArguments) -> Any:
        raise NotImplementedError

    def _write(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _ensure(self, args: SentenceTransformerTrainingArguments) -> Any:
        if self.handle is None:
            self.handle = self._start(args)
        return self.handle

    def on_train_begin(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        self._ensure(args)

    def on_log(
        self,
        args: SentenceTransformerTrainingArguments,
        state: TrainerState,
        logs: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        self._ensure(args)
        self._write(rewrite_logs(logs), int(state.global_step))


# ------------------------------------------------------------------------------------------------ TensorBoard
class TensorBoardCallback(_TrackerCallback):
    """Writes scalars to TensorBoard event files under ``{output_dir}/runs/{run_name or timestamp}``.

    Args:
        args: the training arguments (output_dir, run_name).
        log_dir: write here instead.
    """

    def __init__(self, args: SentenceTransformerTrainingArguments, log_dir: str | os.PathLike | None = None):
        require_package("tensorboard", "tensorboard")
        if log_dir is None:
            log_dir = Path(args.output_dir).absolute() / "runs" / _safe_dir_name(_run_name(args))
        self.log_dir = Path(log_dir)

    @property
    def writer(self) -> Any:
        """The ``SummaryWriter`` (None before training begins and after it ends)."""
        return self.handle

    def _start(self, args: SentenceTransformerTrainingArguments) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(self.log_dir))
        writer.add_text("args", json.dumps(public_config(args), indent=2, sort_keys=True))
        return writer

    def _write(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.handle.add_scalar(tag, value, global_step=step)
        self.handle.flush()

    def on_save(self, args, state, checkpoint_dir, **kwargs: Any) -> None:
        if self.writer is not None:
            self.writer.flush()

    def on_train_end(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


# ------------------------------------------------------------------------------------------------ W&B
class WandbCallback(_TrackerCallback):
    """Logs to Weights & Biases: one run per training, config = the non-secret training arguments.

    The project is ``$WANDB_PROJECT`` (default ``raystx``), the run name ``args.run_name``, files go under
    ``output_dir``. ``WANDB_MODE=offline`` writes the run locally (``{output_dir}/wandb/offline-run-*``). An
    already active ``wandb.run`` (started by the user) is reused and not finished at the end.
    """

    def __init__(self, args: SentenceTransformerTrainingArguments) -> None:
        require_package("wandb", "wandb")
        self._owns_run = False

    @property
    def run(self) -> Any:
        """The ``wandb`` run (None before training begins and after it ends)."""
        return self.handle

    def _start(self, args: SentenceTransformerTrainingArguments) -> Any:
        import wandb

        if wandb.run is not None:
            wandb.run.config.update(public_config(args), allow_val_change=True)
            return wandb.run
        directory = Path(args.output_dir).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "raystx"),
            name=args.run_name,
            config=public_config(args),
            dir=str(directory),
        )
        self._owns_run = True
        return run

    def _write(self, values: dict[str, float], step: int) -> None:
        if values:
            self.handle.log(values, step=step)

    def on_train_end(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        if self.handle is not None:
            if state.best_metric is not None:
                self.handle.summary["best_metric"] = state.best_metric
            if self._owns_run:
                self.handle.finish()
        self.handle = None
        self._owns_run = False


# ------------------------------------------------------------------------------------------------ MLflow
MLFLOW_PARAM_MAX_CHARS = 500  # MLflow's smallest param value limit across its stores


def mlflow_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """Numeric log entries under transformers' ``MLflowCallback`` names (the keys as logged: ``loss``,
    ``eval_loss``, ``eval_{name}_{metric}``, ``learning_rate``); ``step``/``done`` and non-numbers dropped."""
    return {
        key: float(value)
        for key, value in logs.items()
        if key not in _SKIP_LOG_KEYS and not isinstance(value, bool) and isinstance(value, (int, float))
    }


class MLflowCallback(_TrackerCallback):
    """Logs to MLflow like transformers' ``MLflowCallback``: one run per training (``run_name``), the non-secret
    training arguments as params, every logged value as a metric at ``state.global_step``.

    Where it goes is MLflow's own configuration, read in the rank-0 worker: ``MLFLOW_TRACKING_URI`` (e.g.
    ``file:///path/mlruns`` or ``sqlite:///mlflow.db``; on a Ray cluster set it in the job's ``runtime_env``),
    ``MLFLOW_EXPERIMENT_NAME``. An already active MLflow run (started by the user in the same process) is reused
    and not ended at the end.
    """

    def __init__(self, args: SentenceTransformerTrainingArguments) -> None:
        require_package("mlflow", "mlflow")
        self._owns_run = False

    @property
    def run(self) -> Any:
        """The active ``mlflow`` run (None before training begins and after it ends)."""
        return self.handle

    def _start(self, args: SentenceTransformerTrainingArguments) -> Any:
        import mlflow

        active = mlflow.active_run()
        if active is None:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME")
            if experiment:
                mlflow.set_experiment(experiment)
            active = mlflow.start_run(run_name=args.run_name)
            self._owns_run = True
        params = {}
        for key, value in public_config(args).items():
            text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            params[key] = text[:MLFLOW_PARAM_MAX_CHARS]
        items = sorted(params.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(items[start : start + 100]))
        return active

    def _write(self, values: dict[str, float], step: int) -> None:
        import mlflow

        if values:
            mlflow.log_metrics(values, step=step)

    def on_log(
        self,
        args: SentenceTransformerTrainingArguments,
        state: TrainerState,
        logs: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        self._ensure(args)
        self._write(mlflow_metrics(logs), int(state.global_step))

    def on_train_end(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        import mlflow

        if self.handle is not None and self._owns_run:
            mlflow.end_run()
        self.handle = None
        self._owns_run = False


# ------------------------------------------------------------------------------------------------ CodeCarbon
class CodeCarbonCallback(TrainerCallback):
    """Measures the energy and CO2 of training with ``codecarbon.EmissionsTracker`` (output in ``output_dir``)."""

    def __init__(self, args: SentenceTransformerTrainingArguments) -> None:
        require_package("codecarbon", "codecarbon")
        self.tracker: Any = None
        self.emissions: float | None = None

    def on_train_begin(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        import codecarbon

        if self.tracker is None:
            directory = Path(args.output_dir).absolute()
            directory.mkdir(parents=True, exist_ok=True)
            self.tracker = codecarbon.EmissionsTracker(output_dir=str(directory))
        self.tracker.start()

    def on_train_end(self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any):
        if self.tracker is not None:
            self.emissions = self.tracker.stop()


INTEGRATIONS: dict[str, Callable[[SentenceTransformerTrainingArguments], TrainerCallback]] = {
    "tensorboard": TensorBoardCallback,
    "wandb": WandbCallback,
    "codecarbon": CodeCarbonCallback,
    "mlflow": MLflowCallback,
}


def _factories(
    args: SentenceTransformerTrainingArguments,
) -> list[tuple[str, Callable[[SentenceTransformerTrainingArguments], TrainerCallback] | None]]:
    """``(name, factory)`` for every ``report_to`` name (``all`` skipped); an unknown name has factory None."""
    return [(name, INTEGRATIONS.get(name)) for name in args.report_to or [] if name != "all"]


def _unsupported(name: str) -> str:
    return f"report_to={name!r} is not supported; use one of {sorted(INTEGRATIONS)}"


def integration_callbacks(args: SentenceTransformerTrainingArguments) -> list[TrainerCallback]:
    """The tracking callbacks ``args.report_to`` asks for (built inside the rank-0 worker).

    Raises ``ValueError`` for an unknown name or an integration whose package is not installed.
    """
    out: list[TrainerCallback] = []
    for name, factory in _factories(args):
        if factory is None:
            raise ValueError(_unsupported(name))
        out.append(factory(args))
    return out


def check_report_to(args: SentenceTransformerTrainingArguments) -> None:
    """Driver-side check of ``args.report_to``: every name is known and its package is importable.

    Raises one ``ValueError`` listing every problem (naming the integration and the extra to install).
    Builds nothing persistent (the callbacks' constructors only import their package).
    """
    problems = []
    for name, factory in _factories(args):
        if factory is None:
            problems.append(_unsupported(name))
            continue
        try:
            factory(args)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("Invalid report_to:\n  - " + "\n  - ".join(problems))
