"""Time lost per worker failure: restart of the worker group, checkpoint reload, and the steps done again.

    python bench/failure.py [--data-dir ../shared/data] [--models tiny,minilm] [--steps 10] [--save-steps 3]
                            [--kill-step 6] [--per-device 8]

For each model (a tiny random BERT from ``raystx.testing.build_tiny_bert``, and all-MiniLM-L6-v2 on NLI
entailment pairs), two runs of ``raystx.SentenceTransformerTrainer`` on a private local Ray instance, each with 2
workers x 1 CPU, MultipleNegativesRankingLoss, per-device batch ``--per-device``, ``--steps`` optimizer steps,
a checkpoint every ``--save-steps`` and ``FailureConfig(max_failures=1)``:

* baseline: no failure;
* failure: rank 1 SIGKILLs itself once, at the start of step ``--kill-step`` (after a checkpoint), so Ray Train
  restarts the worker group and the loop resumes from the newest checkpoint.

Time lost = wall time of ``train()`` with the failure minus without it (same process, same Ray). The workers
write ``time.time()`` events to a file (one machine, so the clocks agree): the loss logs when each step's forward
starts on every rank and the kill, a callback shipped in the payload (rank 0) logs when it is unpickled on a worker
(the payload reached the new worker group), ``on_train_begin`` (loop built, checkpoint reloaded; with the
restored step), each ``on_log`` (step done) and ``on_save``. From them:

* kill -> payload on the new rank 0: failure detection, worker group teardown and restart, process group;
* payload -> on_train_begin: model placement, optimizer, data sources and the checkpoint reload;
* on_train_begin -> first step of the new attempt starts; kill -> first step starts (restart + reload in all);
* steps re-done: the steps the first attempt finished after the restored checkpoint (plus the one in flight
  when the worker died), and the time the new attempt spends training them again;
* work lost: from the restored checkpoint's step to the kill.

The wall-time difference carries the noise of two Ray Train start-ups and shutdowns; "time lost (worker clocks)"
is the span from the restored checkpoint's step to the killed step done again, minus the same span in the
baseline. Ratios: the failure run's wall time over the baseline's; a phase's share of the wall-time loss.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table  # noqa: E402
from scaling import MAX_LEN, load_pairs, start_private_ray  # noqa: E402

WORKERS = 2


def _write(path: str, event: str, **fields: Any) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")


def timed_loss(model, events: str, kill_rank: int, kill_call: int, marker: str):
    """MNRL that logs each step's start per rank and SIGKILLs rank ``kill_rank`` once, at its ``kill_call``-th
    step (``marker`` says it happened, so the restarted worker goes on)."""
    from raystx.losses import MultipleNegativesRankingLoss

    class TimedLoss(MultipleNegativesRankingLoss):
        def __init__(self) -> None:
            super().__init__(model)
            self.calls = 0

        def forward(self, features, labels):
            from raystx.distributed import get_rank

            self.calls += 1
            rank = get_rank()
            if rank == kill_rank and self.calls == kill_call and not os.path.exists(marker):
                Path(marker).write_text("killed", encoding="utf-8")
                _write(events, "kill", rank=rank, call=self.calls)
                os.kill(os.getpid(), signal.SIGKILL)
            _write(events, "step_start", rank=rank, call=self.calls)
            return super().forward(features, labels)

    return TimedLoss()


def event_clock(events: str):
    """A rank-0 callback: payload unpickled (any worker), train begin (with the restored step), logs, saves."""
    from raystx.train.callbacks import TrainerCallback

    class EventClock(TrainerCallback):
        def __init__(self) -> None:
            self.events = events  # a non-empty __dict__, so unpickling calls __setstate__

        def __setstate__(self, state):
            _write(state["events"], "unpickled")
            self.__dict__.update(state)

        def on_train_begin(self, args, state, **kwargs):
            _write(self.events, "train_begin", step=int(state.global_step))

        def on_log(self, args, state, logs, **kwargs):
            _write(self.events, "log", step=int(logs.get("step", state.global_step)))

        def on_save(self, args, state, *rest, **kwargs):
            _write(self.events, "save", step=int(state.global_step))

    return EventClock()


def train_once(
    model_dir: str, columns: dict[str, list[str]], args, *, kill: bool, max_len: int | None
) -> dict[str, Any]:
    """One 2-worker run; returns wall time and the workers' events."""
    import datasets
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = SentenceTransformer(model_dir, device="cpu")
    if max_len:
        model.max_seq_length = max_len
    with tempfile.TemporaryDirectory(prefix="raystx-bench-failure-") as tmp:
        events = str(Path(tmp) / "events.jsonl")
        Path(events).touch()
        loss = timed_loss(model, events, 1 if kill else -1, args.kill_step, str(Path(tmp) / "killed"))
        trainer = SentenceTransformerTrainer(
            model=model,
            args=SentenceTransformerTrainingArguments(
                output_dir=str(Path(tmp) / "run"),
                max_steps=args.steps,
                per_device_train_batch_size=args.per_device,
                learning_rate=2e-5,
                logging_steps=1,
                save_steps=args.save_steps,
                seed=42,
                disable_tqdm=True,
            ),
            train_dataset=datasets.Dataset.from_dict(columns),
            loss=loss,
            callbacks=[event_clock(events)],
            scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=tmp, name="run", failure_config=FailureConfig(max_failures=1)),
        )
        started = time.perf_counter()
        out = trainer.train()
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in Path(events).read_text(encoding="utf-8").splitlines()]
    assert out.global_step == args.steps, f"the run ended at step {out.global_step}, not {args.steps}"
    return {"wall_s": wall, "events": records}


def phases(run: dict[str, Any]) -> dict[str, Any]:
    """The failure run's timeline (absolute ``time.time()`` marks and step counts)."""
    events = run["events"]
    kill = next(e for e in events if e["event"] == "kill")
    begins = [e for e in events if e["event"] == "train_begin"]
    if len(begins) < 2:
        raise RuntimeError("the worker was killed but no second attempt began")
    first, second = begins[0], begins[-1]
    new_rank0 = second["pid"]
    restored = int(second["step"])
    unpickled = [e["t"] for e in events if e["event"] == "unpickled" and e["pid"] == new_rank0]
    new_steps = [e for e in events if e["event"] == "step_start" and e["pid"] == new_rank0]
    old_logs = [e for e in events if e["event"] == "log" and e["pid"] == first["pid"]]
    new_logs = {e["step"]: e["t"] for e in events if e["event"] == "log" and e["pid"] == new_rank0}
    done_before_kill = max((e["step"] for e in old_logs), default=0)
    redone = list(
        range(restored + 1, done_before_kill + 2)
    )  # finished after the checkpoint + the one in flight
    restored_log = next((e["t"] for e in old_logs if e["step"] == restored), None)
    return {
        "kill": kill["t"],
        "kill_step": done_before_kill + 1,
        "payload": min(unpickled) if unpickled else float("nan"),
        "train_begin": second["t"],
        "first_step_start": new_steps[0]["t"],
        "first_step_done": new_logs.get(restored + 1, float("nan")),
        "restored": restored,
        "redone": redone,
        "redo_s": new_logs.get(redone[-1], float("nan")) - new_steps[0]["t"],
        "work_lost_s": kill["t"] - restored_log if restored_log else float("nan"),
        "attempts": len(begins),
    }


def step_logs(run: dict[str, Any], pid: int | None = None) -> dict[int, float]:
    """When rank 0 logged each step (of the process ``pid``; default: the first rank 0)."""
    events = run["events"]
    if pid is None:
        pid = next(e["pid"] for e in events if e["event"] == "train_begin")
    return {e["step"]: e["t"] for e in events if e["event"] == "log" and e["pid"] == pid}


def rows_for(
    label: str, base: dict[str, Any], failed: dict[str, Any], args
) -> list[tuple[str, str, str, str]]:
    p = phases(failed)
    lost = failed["wall_s"] - base["wall_s"]
    # From the workers' clocks: checkpoint step -> the killed step done (again), minus the same span without a
    # failure (free of the start-up and shutdown noise the wall-time difference carries).
    restored, last = p["restored"], p["redone"][-1]
    base_logs = step_logs(base)
    second = [e for e in failed["events"] if e["event"] == "train_begin"][-1]["pid"]
    failed_span = step_logs(failed, second)[last] - step_logs(failed)[restored]
    clock_lost = failed_span - (base_logs[last] - base_logs[restored])

    def share(seconds: float) -> str:
        return f"{seconds / lost:.0%}" if lost > 0 else ""

    restart = p["payload"] - p["kill"]
    reload = p["train_begin"] - p["payload"]
    to_step = p["first_step_start"] - p["train_begin"]
    total = p["first_step_start"] - p["kill"]
    redone = p["redone"]
    return [
        (
            f"{label}: no failure (baseline)",
            f"{base['wall_s']:.2f} s",
            "1.00x",
            f"train() wall time; {args.steps} steps, 2 workers x 1 CPU, batch {args.per_device}/worker, "
            f"checkpoint every {args.save_steps}",
        ),
        (
            f"{label}: one worker SIGKILLed",
            f"{failed['wall_s']:.2f} s",
            f"{failed['wall_s'] / base['wall_s']:.2f}x",
            f"rank 1 killed in step {p['kill_step']}; {p['attempts']} attempts, resumed from checkpoint-"
            f"{p['restored']}",
        ),
        (f"{label}: time lost", f"{lost:.2f} s", "", "wall time, failure run - baseline"),
        (
            f"{label}: time lost (worker clocks)",
            f"{clock_lost:.2f} s",
            share(clock_lost),
            f"step {restored} logged -> step {last} logged by the new attempt, minus the same span in the baseline",
        ),
        (
            f"{label}: kill -> payload on new rank 0",
            f"{restart:.2f} s",
            share(restart),
            "failure detection, worker group restart, process group",
        ),
        (
            f"{label}: payload -> loop ready",
            f"{reload:.2f} s",
            share(reload),
            "model to device, optimizer, data sources, checkpoint reload",
        ),
        (
            f"{label}: loop ready -> first step starts",
            f"{to_step:.2f} s",
            share(to_step),
            "first batch collation",
        ),
        (
            f"{label}: kill -> first step of new attempt",
            f"{total:.2f} s",
            share(total),
            "restart + checkpoint reload, in all",
        ),
        (
            f"{label}: steps re-done",
            f"{len(redone)}",
            "",
            f"steps {redone[0]}-{redone[-1]} (after checkpoint-{p['restored']}; the last was in flight at the kill)",
        ),
        (
            f"{label}: time re-doing them",
            f"{p['redo_s']:.2f} s",
            share(p["redo_s"]),
            f"new attempt, start of step {redone[0]} -> end of step {redone[-1]}; the first attempt had spent "
            f"{p['work_lost_s']:.2f} s from checkpoint-{p['restored']} to the kill",
        ),
    ]


def tiny_setup(tmp: Path) -> tuple[str, dict[str, list[str]], int | None]:
    from raystx.testing import build_tiny_bert, make_sentences

    directory = build_tiny_bert(tmp / "tiny-bert")
    n = 512
    return str(directory), {"anchor": make_sentences(n, 1), "positive": make_sentences(n, 2)}, None


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", default="tiny,minilm", help="comma-separated: tiny, minilm")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--save-steps", type=int, default=3, help="checkpoint every N steps")
    parser.add_argument("--kill-step", type=int, default=6, help="rank 1 dies at the start of this step")
    parser.add_argument("--per-device", type=int, default=8, help="per-device batch (pairs)")
    args = parser.parse_args()
    if not (args.save_steps < args.kill_step <= args.steps):
        parser.error("need --save-steps < --kill-step <= --steps (a checkpoint before the kill)")
    models = [m for m in args.models.split(",") if m]
    start_private_ray(WORKERS)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="raystx-bench-failure-models-") as tmp:
        needed = args.steps * args.per_device * WORKERS + WORKERS * args.per_device
        setups = {}
        for name in models:
            if name == "tiny":
                setups[name] = tiny_setup(Path(tmp))
            elif name == "minilm":
                setups[name] = (minilm_dir(args.model), load_pairs(args.data_dir, needed), MAX_LEN)
            else:
                parser.error(f"unknown model {name!r}; use tiny or minilm")
        warm = time.perf_counter()
        model_dir, columns, max_len = setups["tiny"] if "tiny" in setups else tiny_setup(Path(tmp))
        warm_args = argparse.Namespace(**{**vars(args), "steps": 2, "save_steps": 1})
        train_once(model_dir, columns, warm_args, kill=False, max_len=max_len)
        print(
            f"throwaway run (warms Ray and the file caches): {time.perf_counter() - warm:.1f} s", flush=True
        )
        for name in models:
            model_dir, columns, max_len = setups[name]
            label = "MiniLM-L6" if name == "minilm" else "tiny BERT"
            base = train_once(model_dir, columns, args, kill=False, max_len=max_len)
            print(f"{label}: baseline {base['wall_s']:.1f} s", flush=True)
            failed = train_once(model_dir, columns, args, kill=True, max_len=max_len)
            print(f"{label}: with a killed worker {failed['wall_s']:.1f} s", flush=True)
            rows += rows_for(label, base, failed, args)
    print(
        f"\nTime lost per worker failure: 2 Ray workers x 1 CPU, MNRL, {args.steps} steps, checkpoint every "
        f"{args.save_steps}, rank 1 SIGKILLed at step {args.kill_step}, FailureConfig(max_failures=1); private "
        "local Ray. ratio: wall time / baseline, or a phase's share of the time lost"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
