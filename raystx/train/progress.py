"""Live training progress on the driver, fed by what the rank-0 worker logs.

Rank 0 pushes each log record to a small Ray actor (fire-and-forget, so the training step never waits on it);
a driver thread polls the actor and shows one live progress bar (steps, loss, learning rate, ETA) on a terminal,
or plain lines otherwise (``ray job submit`` logs). After training, ``summary_table`` renders the final metrics.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from raystx.train.callbacks import TrainerCallback


class _Channel:
    """Holds log records until the driver drains them (runs as a Ray actor)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def push(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def drain(self) -> list[dict[str, Any]]:
        out, self.records = self.records, []
        return out


def start_channel():
    import ray

    return ray.remote(num_cpus=0)(_Channel).remote()


class ProgressCallback(TrainerCallback):
    """Rank-0 side: forwards ``on_train_begin`` and ``on_log`` records to the channel actor."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def on_train_begin(self, args, state, **kwargs):
        self.channel.push.remote({"max_steps": state.max_steps, "step": state.global_step})

    def on_log(self, args, state, logs, **kwargs):
        self.channel.push.remote({**logs, "max_steps": state.max_steps})


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class DriverProgress:
    """Polls the channel in a thread and renders progress until ``close()``.

    On a terminal with ``bar=True``: one live ``rich`` progress bar (steps, ETA, loss, learning rate, eval
    metrics; Ray's forwarded worker output prints above it). Otherwise (``ray job submit`` logs, a file, CI, or
    ``disable_tqdm``): one plain ``[raystx] step ...`` line per logging step.
    """

    def __init__(self, channel: Any, interval: float = 1.0, stream=None, bar: bool = True) -> None:
        self.channel = channel
        self.interval = interval
        self.stream = stream or sys.stderr
        self.records: list[dict[str, Any]] = []
        self._use_bar = bar and self.stream.isatty()
        self._bar = None
        self._task = None
        self._started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)
        self._poll()

    def _poll(self) -> None:
        import ray

        try:
            records = ray.get(self.channel.drain.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - progress display must never break training
            return
        for record in records:
            self._show(record)
            if "loss" in record or any(k.startswith("eval_") for k in record):
                self.records.append(record)

    def _show(self, record: dict[str, Any]) -> None:
        total = int(record.get("max_steps") or 0)
        step = int(record.get("step") or 0)
        fields = {k: record[k] for k in ("loss", "learning_rate", "epoch") if k in record}
        fields.update({k: v for k, v in record.items() if k.startswith("eval_")})
        if self._use_bar:
            self._update_bar(step, total, fields)
        elif fields:
            elapsed = time.time() - self._started
            eta = elapsed / step * (total - step) if step and total else 0.0
            parts = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            print(
                f"[raystx] step {step}/{total} {parts} elapsed={elapsed:.0f}s eta={eta:.0f}s",
                file=self.stream,
                flush=True,
            )

    def _update_bar(self, step: int, total: int, fields: dict[str, Any]) -> None:
        if self._bar is None:
            if not total:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=Console(file=self.stream),
            )
            self._bar.start()
            self._task = self._bar.add_task("training", total=total, metrics="")
        metrics = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self._bar.update(self._task, completed=step, total=total or None, metrics=metrics)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if self._bar is not None:
            self._bar.stop()


def summary_table(log_history: list[dict[str, Any]], seconds: float | None = None) -> str:
    """A plain-text table of the last logged training loss and every final evaluator metric."""
    final: dict[str, Any] = {}
    for record in log_history:
        final.update(
            {k: v for k, v in record.items() if k not in ("done", "elapsed_s", "samples_per_second")}
        )
    if seconds is not None:
        final["train_runtime_s"] = round(seconds, 1)
    if not final:
        return ""
    width = max(len(k) for k in final)
    lines = ["training summary", "-" * (width + 14)]
    lines += [f"{k:<{width}}  {_fmt(v)}" for k, v in final.items()]
    return "\n".join(lines)
