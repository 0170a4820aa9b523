"""Run an evaluation config: build the evaluators on the driver, evaluate on Ray workers, write the report.

Why Ray Train workers and not ``raystx.infer``'s actor pool: evaluators are whole programs (IR retrieval in
corpus chunks, reranking per sample, quantization, custom classes), not one ``encode`` of a column. A small
``TorchTrainer`` gives ``num_workers`` ranks of one process group, and each runs the evaluators exactly as
in-loop evaluation does (``raystx.evaluation.sharded.run_evaluator``): every encode is split across the ranks
and gathered, rank 0's metrics are reported. So the job's numbers are the training run's numbers, for every
evaluator, with no second implementation. ``scaling.num_workers: 0`` evaluates in this process.

In: an ``EvalJobConfig``. Out: ``{"model", "evaluators": [{"type", "name", "primary_metric", "metrics"}]}``,
also written to ``output_dir`` as ``metrics.json`` and ``metrics.md``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from raystx.config import ConfigError
from raystx.evaljob.config import EvalJobConfig, build_evaluators
from raystx.evaljob.report import write_report

logger = logging.getLogger("raystx.evaljob")


def load_model(config: EvalJobConfig) -> Any:
    """The model to evaluate, loaded on the driver (a bad path fails here, before any worker starts)."""
    from raystx.models import SentenceTransformer
    from raystx.train.build import resolve_model_path

    name = config.model.name_or_path
    if not name:
        raise ConfigError("model.name_or_path is required: the saved model directory to evaluate")
    path = resolve_model_path(name)
    if "://" not in path and not Path(path).is_dir():
        raise ConfigError(f"model.name_or_path: {path} is not a model directory")
    model = SentenceTransformer(path, device="cpu")
    if config.model.max_seq_length:
        model.max_seq_length = config.model.max_seq_length
    return model


def evaluate_all(evaluators: list[Any], model: Any) -> list[dict[str, Any]] | None:
    """Run each evaluator (sharded when in a process group); rank 0 gets one entry per evaluator, others None."""
    from raystx.distributed import get_rank
    from raystx.evaluation.sharded import run_evaluator

    entries = []
    for evaluator in evaluators:
        metrics = run_evaluator(evaluator, model)  # every rank calls, in the same order
        if metrics is None:
            continue
        entries.append(
            {
                "type": type(evaluator).__name__,
                "name": getattr(evaluator, "name", ""),
                "primary_metric": getattr(evaluator, "primary_metric", None),
                "metrics": {k: float(v) for k, v in metrics.items()},
            }
        )
    return entries if get_rank() == 0 else None


class ResultBox:
    """A zero-CPU Ray actor that holds rank 0's result for the driver (Ray Train 2.60's ``Result.metrics``
    keeps only metrics reported with a checkpoint, and this job writes none)."""

    def __init__(self) -> None:
        self.value: Any = None

    def put(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


def _worker(config: dict[str, Any]) -> None:
    """On every Ray Train worker: fetch model and evaluators, evaluate sharded; rank 0 hands its entries and the
    evaluation's wall time to the driver's ``ResultBox``."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from raystx.train.driver import quiet_report_lines

    quiet_report_lines()
    torch.set_num_threads(config["threads"])
    model, evaluators = ray.get(config["payload"][0])
    model.to(ray.train.torch.get_device())
    model.eval()
    started = time.perf_counter()
    entries = evaluate_all(evaluators, model)
    seconds = time.perf_counter() - started
    if entries is not None:  # rank 0
        ray.get(config["box"].put.remote((entries, seconds)))


def _on_ray(config: EvalJobConfig, model: Any, evaluators: list[Any]) -> tuple[list[dict[str, Any]], float]:
    """The evaluation on Ray; a storage folder raystx made for it is removed afterwards, however it ended."""
    from raystx.ray_init import ensure_ray

    ensure_ray()
    storage = config.storage_path or tempfile.mkdtemp(prefix="raystx-evaluate-")
    try:
        return _fit_on_ray(config, model, evaluators, storage)
    finally:
        if config.storage_path is None:  # raystx's own: Ray Train's bookkeeping of this evaluation only
            shutil.rmtree(storage, ignore_errors=True)


def _fit_on_ray(
    config: EvalJobConfig, model: Any, evaluators: list[Any], storage: str
) -> tuple[list[dict[str, Any]], float]:
    """Every evaluator on ``config.scaling`` Ray Train workers, Ray Train's run folder under ``storage``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raystx.train.driver import ray_train_logging, train_environment, unwrap_worker_error

    scaling = config.scaling
    box = ray.remote(num_cpus=0)(ResultBox).remote()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "payload": [ray.put((model, evaluators))],
            "threads": max(1, int(scaling.cpus_per_worker)),
            "box": box,
        },
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})},
        ),
        run_config=RunConfig(
            storage_path=storage, name=f"evaluate-{int(time.time())}", logging_config=ray_train_logging()
        ),
    )
    try:
        with train_environment():
            trainer.fit()
    except Exception as exc:
        raise unwrap_worker_error(exc) from exc
    try:
        entries, seconds = ray.get(box.get.remote())
    finally:
        ray.kill(box)
    return entries, float(seconds)


def run_evaluation(config: EvalJobConfig, evaluators: list[Any] | None = None) -> dict[str, Any]:
    """Evaluate ``config.model`` with every evaluator of the config (``evaluators``: already built from it);
    writes and returns the report."""
    evaluators = build_evaluators(config) if evaluators is None else evaluators
    model = load_model(config)
    if config.scaling.num_workers == 0:
        started = time.perf_counter()
        entries, seconds = evaluate_all(evaluators, model) or [], time.perf_counter() - started
    else:
        entries, seconds = _on_ray(config, model, evaluators)
    report = {
        "model": config.model.name_or_path,
        "num_workers": config.scaling.num_workers,
        "eval_seconds": round(seconds, 3),
        "evaluators": entries,
    }
    write_report(report, config.output_dir)
    return report
