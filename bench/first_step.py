"""Start-up latency: wall time from ``trainer.train()`` to the first optimizer step, on a warm local Ray.

    python bench/first_step.py [--data-dir ../shared/data] [--workers 1] [--threads 2] [--repeats 1]

A private local Ray instance is started and one throwaway training run (same configuration) warms it up
(worker processes, imports, file caches). Then each measured run trains all-MiniLM-L6-v2 (MNRL, batch 32,
max_seq_length 128) for 2 steps with ``logging_first_step=True``, and clocks (``time.time()``, one machine, so
driver and worker clocks agree):

* driver: the ``train()`` call, the start and end of the driver-side preparation (``_prepare``: argument
  checks, ``ray.init``, data staging and column-contract validation; timed by wrapping the method), and the
  call to ``TorchTrainer.fit`` (timed by a ``TorchTrainer`` subclass put in place for the run);
* rank 0 worker, through a callback shipped in the payload: its process start (``psutil.Process().create_time()``;
  a process Ray started earlier for its pool shows up as starting before ``fit``), the moment the payload is
  unpickled there (the callback's ``__setstate__``: after the Ray actor, imports and process group exist),
  ``on_train_begin`` (after model placement, optimizer, data sources, resume check) and the first ``on_log``
  (after step 1: first batch collation, forward, backward, optimizer step, log all-reduce).

Prints each phase, its share of the total, and the total "train() -> first optimizer step" (target <= 15 s).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table  # noqa: E402
from scaling import load_pairs, raystx_train, start_private_ray  # noqa: E402

TARGET_S = 15.0


def event_clock(path: str):
    """A callback appending ``{"event", "t", "pid"}`` lines to ``path``: when it is unpickled (in any process),
    the rank-0 worker's process start, ``on_train_begin`` and each ``on_log``."""
    from raystx.train.callbacks import TrainerCallback

    def write(event: str, t: float, **extra) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "t": t, "pid": os.getpid(), **extra}) + "\n")

    class EventClock(TrainerCallback):
        def __init__(self) -> None:
            self.path = path  # a non-empty __dict__: pickle calls __setstate__ only when there is state

        def __setstate__(self, state):
            with open("/proc/self/cmdline", "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()[:60]
            write("unpickled", time.time(), title=title)
            self.__dict__.update(state)

        def on_train_begin(self, args, state, **kwargs):
            now = time.time()
            import psutil

            write("process_start", psutil.Process().create_time())
            write("train_begin", now)

        def on_log(self, args, state, logs, **kwargs):
            write("log", time.time(), step=int(logs.get("step", -1)))

    return EventClock()


class DriverClock:
    """Wraps the trainer's ``_prepare`` and ``ray.train.torch.TorchTrainer`` to record driver-side times."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def __enter__(self) -> DriverClock:
        import ray.train.torch

        from raystx.train.trainer import SentenceTransformerTrainer

        marks = self.marks
        self._prepare = original_prepare = SentenceTransformerTrainer._prepare
        self._torch_trainer = original_trainer = ray.train.torch.TorchTrainer

        def prepare(trainer, staging):
            marks["prepare_start"] = time.time()
            try:
                return original_prepare(trainer, staging)
            finally:
                marks["prepare_end"] = time.time()

        class ClockedTorchTrainer(original_trainer):
            def fit(self):
                marks["fit_call"] = time.time()
                return super().fit()

        SentenceTransformerTrainer._prepare = prepare
        ray.train.torch.TorchTrainer = ClockedTorchTrainer
        return self

    def __exit__(self, *exc) -> None:
        import ray.train.torch

        from raystx.train.trainer import SentenceTransformerTrainer

        SentenceTransformerTrainer._prepare = self._prepare
        ray.train.torch.TorchTrainer = self._torch_trainer


def measure(model_dir: str, columns, workers: int, threads: int) -> dict[str, float]:
    """One measured run: the marks of every phase (seconds since the ``train()`` call)."""
    with tempfile.TemporaryDirectory(prefix="raystx-first-step-") as tmp:
        events_file = str(Path(tmp) / "events.jsonl")
        with DriverClock() as clock:
            run = raystx_train(
                model_dir,
                columns,
                steps=2,
                workers=workers,
                threads=threads,
                logging_steps=1000,
                logging_first_step=True,
                callbacks=[event_clock(events_file)],
            )
        events = [json.loads(line) for line in Path(events_file).read_text().splitlines()]
    t0 = run["train_call_time"]
    worker_pid = next(e["pid"] for e in events if e["event"] == "train_begin")
    unpickled = [e["t"] for e in events if e["event"] == "unpickled" and e["pid"] == worker_pid]
    first_log = min(e["t"] for e in events if e["event"] == "log" and e["step"] == 1)
    marks = {
        "prepare_start": clock.marks["prepare_start"] - t0,
        "prepare_end": clock.marks["prepare_end"] - t0,
        "fit_call": clock.marks["fit_call"] - t0,
        "process_start": next(e["t"] for e in events if e["event"] == "process_start") - t0,
        "unpickled": (min(unpickled) if unpickled else float("nan")) - t0,
        "train_begin": next(e["t"] for e in events if e["event"] == "train_begin") - t0,
        "first_step": first_log - t0,
        "train_return": run["wall_s"],
    }
    others = [e for e in events if e["event"] == "unpickled" and e["pid"] != worker_pid]
    marks["other_unpickles"] = ", ".join(f"{e['title']} at {e['t'] - t0:.2f} s" for e in others)
    return marks


def phase_rows(marks: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """Table rows: one per phase, with its share of the time to the first step."""
    total = marks["first_step"]
    spans = [
        ("driver: checks before _prepare", 0.0, marks["prepare_start"], "output dir, run config"),
        (
            "driver: _prepare",
            marks["prepare_start"],
            marks["prepare_end"],
            "args, ray.init check, staging, contract validation",
        ),
        ("driver: payload -> TorchTrainer.fit()", marks["prepare_end"], marks["fit_call"], ""),
    ]
    if marks["fit_call"] < marks["process_start"] < marks["unpickled"]:
        spans += [
            (
                "Ray Train start -> rank-0 process",
                marks["fit_call"],
                marks["process_start"],
                "controller, actors",
            ),
            (
                "rank-0 process -> payload there",
                marks["process_start"],
                marks["unpickled"],
                "imports, actor init, process group, payload transfer",
            ),
        ]
    else:  # the worker process was started before fit() (a pooled Ray worker) or its start is unknown
        spans.append(
            (
                "Ray Train start -> payload on rank 0",
                marks["fit_call"],
                marks["unpickled"],
                f"controller, worker actor, imports, process group; worker process started "
                f"{marks['process_start'] - marks['fit_call']:+.2f} s from fit()",
            )
        )
    spans += [
        (
            "worker setup -> on_train_begin",
            marks["unpickled"],
            marks["train_begin"],
            "RayRuntime, model to device, optimizer, data sources, resume check",
        ),
        ("first step -> first on_log", marks["train_begin"], marks["first_step"], "collate, fwd, bwd, step"),
    ]
    rows = [
        (name, f"{end - start:.3f} s", f"{(end - start) / total:.0%}", note)
        for name, start, end, note in spans
    ]
    rows.append(("train() -> first optimizer step", f"{total:.2f} s", "", f"target <= {TARGET_S:.0f} s"))
    rows.append(
        (
            "train() -> return (2 steps)",
            f"{marks['train_return']:.2f} s",
            "",
            "includes the final checkpoint and the load back",
        )
    )
    return rows


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPUs per worker")
    parser.add_argument("--repeats", type=int, default=1, help="measured runs (the fastest is tabled)")
    args = parser.parse_args()
    model_dir = minilm_dir(args.model)
    columns = load_pairs(args.data_dir, 4 * 32)
    start_private_ray(args.workers * args.threads)

    warm = time.perf_counter()
    raystx_train(model_dir, columns, steps=1, workers=args.workers, threads=args.threads, logging_steps=1000)
    print(f"throwaway run (cold Ray): {time.perf_counter() - warm:.1f} s", flush=True)
    runs = []
    for i in range(args.repeats):
        marks = measure(model_dir, columns, args.workers, args.threads)
        runs.append(marks)
        print(f"run {i + 1}: train() -> first optimizer step {marks['first_step']:.2f} s", flush=True)
    best = min(runs, key=lambda m: m["first_step"])
    print(
        f"\nTime to first optimizer step, MiniLM-L6, MNRL, batch 32, {args.workers} worker(s) x {args.threads} "
        f"CPU(s), warm private Ray (fastest of {args.repeats}); ratio = share of the total"
    )
    if best["other_unpickles"]:
        print(f"(the payload was also unpickled in: {best['other_unpickles']}; times from the train() call)")
    print_table(phase_rows(best))


if __name__ == "__main__":
    main()
