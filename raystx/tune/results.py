"""The results of a sweep: one row per trial, the best trial, the Pareto front, the exported best model.

Rows come from Tune's experiment state (status, last result, every result) and the files each trial wrote
(``params.json``, ``result.json``, ``model/``). A trial's ``status`` is ``COMPLETED`` (trained to the end and saved
its model), ``STOPPED`` (stopped early by the scheduler), ``ERROR``, or ``UNFINISHED`` (pending/running when the
sweep was interrupted). ``steps`` is the last optimizer step the trial reported: summed over trials it is the
sweep's compute in trial-steps. ``time_s`` is Tune's ``time_total_s`` at the trial's last result (start-up included).
Paths are storage locations (a local folder or a URI such as ``s3://``; see ``raystx.train.storage``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from raystx.train.storage import (
    copy_tree,
    delete_tree,
    is_dir,
    is_file,
    join,
    read_text,
    resolve,
    write_text,
)
from raystx.tune.objective import Objective
from raystx.tune.trial import MODEL_DIR, PARAMS_FILE, RESULT_FILE, trial_dirname_for

COMPLETED, STOPPED, ERROR, UNFINISHED = "COMPLETED", "STOPPED", "ERROR", "UNFINISHED"


@dataclass
class TrialRow:
    """One trial of the sweep (see the module docstring for ``status`` and ``steps``)."""

    trial_id: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    best: dict[str, float]
    steps: int
    evaluations: int
    time_s: float
    trial_dir: str
    model_path: str | None = None
    distributions: dict[str, str] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    error: str | None = None

    def value(self, metric: str) -> float | None:
        value = self.metrics.get(metric)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _read_json(location: str) -> dict[str, Any] | None:
    try:
        return json.loads(read_text(location))
    except (OSError, ValueError):
        return None


def collect_rows(experiment_path: str, objective: Objective) -> list[TrialRow]:
    """Read every trial of the Tune experiment at ``experiment_path`` into ``TrialRow``s (trial id order)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment_path))
    frames = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        trial_dir = join(str(experiment_path), trial_dirname_for(trial.trial_id))
        params_info = _read_json(join(trial_dir, PARAMS_FILE)) or {}
        result_info = _read_json(join(trial_dir, RESULT_FILE))
        last = dict(trial.last_result or {})
        frame = frames.get(trial.trial_id)
        history: list[float] = []
        best: dict[str, float] = {}
        for metric, mode in zip(objective.metrics, objective.modes):
            if frame is not None and metric in frame:
                values = [float(v) for v in frame[metric].tolist() if v == v]
                if metric == objective.metric:
                    history = values
                if values:
                    best[metric] = max(values) if mode == "max" else min(values)
        if result_info is not None:
            status = COMPLETED
            metrics = {
                k: v for k, v in (result_info.get("metrics") or {}).items() if isinstance(v, (int, float))
            }
            steps = int(result_info.get("global_step") or last.get("step") or 0)
            time_s = float(last.get("time_total_s") or result_info.get("time_s") or 0.0)
        else:
            status = {"ERROR": ERROR, "TERMINATED": STOPPED}.get(trial.status, UNFINISHED)
            metrics = {
                k: v
                for k, v in last.items()
                if k.startswith(("eval_", "objective")) and isinstance(v, (int, float))
            }
            steps = int(last.get("step") or 0)
            time_s = float(last.get("time_total_s") or 0.0)
        model = join(trial_dir, MODEL_DIR)
        error = None
        if trial.status == "ERROR":
            error = _error_text(trial_dir)
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status=status,
                params=dict(params_info.get("params") or {}),
                metrics=metrics,
                best=best,
                steps=steps,
                evaluations=int(last.get("training_iteration") or 0),
                time_s=round(time_s, 3),
                trial_dir=trial_dir,
                model_path=model if status == COMPLETED and is_dir(model) else None,
                distributions=dict(params_info.get("distributions") or {}),
                history=history,
                error=error,
            )
        )
    rows.sort(key=lambda r: r.trial_id)
    return rows


def _error_text(trial_dir: str) -> str | None:
    """The last line of Tune's ``error.txt`` in the trial folder, if there is one."""
    location = join(trial_dir, "error.txt")
    if not is_file(location):
        return None
    try:
        text = read_text(location).strip().splitlines()
    except (OSError, ValueError):
        return None
    return text[-1][:500] if text else None


def best_row(rows: list[TrialRow], objective: Objective) -> TrialRow | None:
    """The completed trial (with a saved model) that is best on the objective's first metric."""
    candidates = [r for r in rows if r.status == COMPLETED and r.value(objective.metric) is not None]
    if not candidates:
        return None
    best = candidates[0]
    for row in candidates[1:]:
        if objective.better(row.value(objective.metric), best.value(objective.metric)):
            best = row
    return best


def pareto_front(rows: list[TrialRow], objective: Objective) -> list[TrialRow]:
    """Completed trials not dominated on all objective metrics (for multi-objective sweeps)."""
    scored = [
        r for r in rows if r.status == COMPLETED and all(r.value(m) is not None for m in objective.metrics)
    ]

    def signed(row: TrialRow) -> list[float]:
        return [
            row.value(m) if mode == "max" else -row.value(m)
            for m, mode in zip(objective.metrics, objective.modes)
        ]

    front = []
    for row in scored:
        mine = signed(row)
        dominated = False
        for other in scored:
            theirs = signed(other)
            if (
                other is not row
                and all(t >= m for t, m in zip(theirs, mine))
                and any(t > m for t, m in zip(theirs, mine))
            ):
                dominated = True
                break
        if not dominated:
            front.append(row)
    return front


def total_steps(rows: list[TrialRow]) -> int:
    return sum(r.steps for r in rows)


# ------------------------------------------------------------------------------------------ files


def _flat(row: TrialRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "trial_id": row.trial_id,
        "status": row.status,
        "steps": row.steps,
        "evaluations": row.evaluations,
        "time_s": row.time_s,
    }
    out.update({f"param.{k}": v for k, v in row.params.items()})
    out.update({f"metric.{k}": v for k, v in row.metrics.items()})
    out.update({f"best.{k}": v for k, v in row.best.items()})
    out["model_path"] = row.model_path or ""
    out["error"] = row.error or ""
    return out


def write_table(rows: list[TrialRow], directory: str) -> tuple[str, str]:
    """``trials.csv`` (one flat row per trial) and ``trials.json`` (full rows) in the folder ``directory`` (local
    or a URI); returns their locations."""
    flat = [_flat(r) for r in rows]
    columns: list[str] = []
    for item in flat:
        columns.extend(k for k in item if k not in columns)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for item in flat:
        writer.writerow(item)
    csv_path, json_path = join(str(directory), "trials.csv"), join(str(directory), "trials.json")
    write_text(csv_path, buffer.getvalue())
    write_text(json_path, json.dumps([asdict(r) for r in rows], indent=2, default=str))
    return csv_path, json_path


def summary_text(
    rows: list[TrialRow], objective: Objective, best: TrialRow | None, front: list[TrialRow] | None = None
) -> str:
    """A plain-text table of the trials plus the best trial / Pareto front."""
    metric_names = list(objective.metrics)
    param_names: list[str] = []
    for r in rows:
        param_names.extend(k for k in r.params if k not in param_names)
    header = ["trial", "status", "steps", "time_s", *metric_names, *param_names]
    lines = [header]
    for r in rows:
        values = [r.trial_id, r.status, str(r.steps), f"{r.time_s:.1f}"]
        values += [_fmt(r.metrics.get(m)) for m in metric_names]
        values += [_fmt(r.params.get(p)) for p in param_names]
        lines.append(values)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    counts = {s: sum(r.status == s for r in rows) for s in (COMPLETED, STOPPED, ERROR, UNFINISHED)}
    out.append("")
    out.append(
        f"{len(rows)} trials: "
        + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
        + f"; {total_steps(rows)} trial-steps in total"
    )
    if best is not None:
        out.append(
            f"best trial {best.trial_id}: {objective.metric}={_fmt(best.value(objective.metric))} ({objective.mode})"
        )
        out.append(f"  params: {json.dumps(best.params, default=str)}")
    if front:
        out.append(
            "Pareto front ("
            + ", ".join(f"{m} {d}" for m, d in zip(objective.metrics, objective.modes))
            + "):"
        )
        for r in front:
            out.append(
                "  " + r.trial_id + "  " + "  ".join(f"{m}={_fmt(r.value(m))}" for m in objective.metrics)
            )
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def export_best(
    best: TrialRow,
    target: str,
    objective: Objective,
    search: dict[str, str],
    settings: dict[str, Any],
    n_trials: int,
) -> str:
    """Copy the best trial's model (sentence-transformers format) to ``target`` (replaced if it exists; local or
    a URI) and add a model-card section recording the search (space, settings, the trial's parameters and
    metrics). Returns the target's location."""
    if best.model_path is None:
        raise ValueError(f"trial {best.trial_id} has no saved model")
    target = resolve(str(target))
    delete_tree(target)
    copy_tree(best.model_path, target)
    card = join(target, "README.md")
    text = read_text(card) if is_file(card) else ""
    lines = [
        "",
        "## Hyperparameter search",
        "",
        f"This model is the best of {n_trials} trials of a raystx sweep (Ray Tune + Optuna), selected on "
        f"`{objective.metric}` ({objective.mode}).",
        "",
        f"- Trial: `{best.trial_id}` ({best.steps} optimizer steps)",
        *[f"- `{m}`: {_fmt(best.value(m))}" for m in objective.metrics],
        f"- Searcher: `{settings.get('searcher')}`, scheduler: `{settings.get('scheduler')}`, seed: `{settings.get('seed')}`",
        "",
        "Chosen parameters:",
        "",
        *[f"- `{k}`: `{v}`" for k, v in best.params.items()],
        "",
        "Search space:",
        "",
        *[f"- `{k}`: {v}" for k, v in search.items()],
        "",
    ]
    write_text(card, text.rstrip() + "\n" + "\n".join(lines))
    write_text(join(target, "sweep_trial.json"), json.dumps(asdict(best), indent=2, default=str))
    return target
