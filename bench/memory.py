"""Peak training memory: the raystx Ray Train worker (1 worker) vs sentence-transformers' trainer process.

    python bench/memory.py [--data-dir ../shared/data] [--steps 8] [--threads 2]

Both sides train all-MiniLM-L6-v2 with MultipleNegativesRankingLoss (batch 32, max_seq_length 128, AdamW) for
``--steps`` steps on the same NLI entailment pairs, each in a fresh Python subprocess:

* sentence-transformers: ``SentenceTransformerTrainer`` in the child process itself; its peak is the child's
  peak resident set (``VmHWM``, read from ``/proc/self/status`` at the end).
* raystx: the child starts a private Ray instance (2 CPUs) and runs ``raystx.SentenceTransformerTrainer`` with
  ``ScalingConfig(num_workers=1, resources_per_worker={"CPU": 2})``. A sampler thread walks the child's
  process tree (the raylet and its workers are its descendants, so other engineers' Ray processes are never
  counted) every 50 ms and keeps the highest ``VmHWM`` of any process whose title contains
  ``RayTrainWorker``: the kernel's own peak for that process, so short spikes between samples are not missed
  (only growth after the last sample could be). The driver's peak and the peak sum over all Ray processes of
  the child (GCS, raylet, controller, worker) are printed as notes.

The worker's resident set includes what Ray itself maps into every worker (core worker, gRPC, object store
client); the ratio raystx worker / sentence-transformers process is the figure of merit (lower is better).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table  # noqa: E402

BATCH = 32


def vm_hwm_mib(pid: int | str = "self") -> float | None:
    """Peak resident set (``VmHWM``) of a process in MiB, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class TreeSampler(threading.Thread):
    """Samples this process's descendants: peak ``VmHWM`` per pid of workers whose title has ``marker``."""

    def __init__(self, marker: str = "RayTrainWorker", interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.marker = marker
        self.interval_s = interval_s
        self.worker_peaks: dict[int, float] = {}
        self.tree_peak_mib = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._halt.is_set():
            total = 0.0
            for proc in me.children(recursive=True):
                try:
                    title = " ".join(proc.cmdline())
                    total += proc.memory_info().rss / 2**20
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                if self.marker in title:
                    peak = vm_hwm_mib(proc.pid)
                    if peak is not None:
                        self.worker_peaks[proc.pid] = max(peak, self.worker_peaks.get(proc.pid, 0.0))
            self.tree_peak_mib = max(self.tree_peak_mib, total)
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def rss_at_train_begin(path: str):
    """A rank-0 callback writing the worker's current RSS (MiB) to ``path`` when the loop starts."""
    from raystx.train.callbacks import TrainerCallback

    class RssProbe(TrainerCallback):
        def __init__(self) -> None:
            self.path = path

        def on_train_begin(self, args, state, **kwargs):
            import psutil

            Path(self.path).write_text(str(psutil.Process().memory_info().rss / 2**20))

    return RssProbe()


def child_raystx(model_dir: str, data_dir: Path, steps: int, threads: int) -> dict:
    import tempfile

    from scaling import load_pairs, raystx_train, start_private_ray, steady_pairs_per_s

    columns = load_pairs(data_dir, (steps + 2) * BATCH)
    start_private_ray(threads)
    sampler = TreeSampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="raystx-memory-") as tmp:
        probe = Path(tmp) / "rss.txt"
        try:
            run = raystx_train(
                model_dir,
                columns,
                steps=steps,
                workers=1,
                threads=threads,
                logging_steps=1,
                callbacks=[rss_at_train_begin(str(probe))],
            )
        finally:
            sampler.stop()
        begin_mib = float(probe.read_text())
    if not sampler.worker_peaks:
        raise RuntimeError("no RayTrainWorker process was seen among this process's descendants")
    return {
        "peak_mib": max(sampler.worker_peaks.values()),
        "workers_seen": len(sampler.worker_peaks),
        "begin_mib": begin_mib,
        "driver_peak_mib": vm_hwm_mib(),
        "tree_peak_mib": sampler.tree_peak_mib,
        "pairs_per_s": steady_pairs_per_s(run["log_history"], 1, steps, BATCH) if steps > 1 else None,
    }


def child_st(model_dir: str, data_dir: Path, steps: int, threads: int) -> dict:
    from throughput import load_pairs, st_trainer

    pairs = load_pairs(data_dir, (steps + 2) * BATCH)
    speed = st_trainer(model_dir, pairs, steps - 1, 1, threads)
    return {"peak_mib": vm_hwm_mib(), "pairs_per_s": speed}


def spawn(side: str, args) -> dict:
    """Run one side in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    cmd += ["--data-dir", str(args.data_dir)] + (["--model", args.model] if args.model else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"the {side} child failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--steps", type=int, default=8, help="training steps (at least 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["raystx", "st"], help="internal: run one side and print JSON")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.child:
        run = child_raystx if args.child == "raystx" else child_st
        result = run(minilm_dir(args.model), args.data_dir, args.steps, args.threads)
        print(json.dumps(result))
        return

    st = spawn("st", args)
    print(f"sentence-transformers: peak {st['peak_mib']:.0f} MiB", flush=True)
    ours = spawn("raystx", args)
    print(f"raystx worker: peak {ours['peak_mib']:.0f} MiB", flush=True)
    print(
        f"\nPeak resident memory, MiniLM-L6, MNRL, batch {BATCH}, max_seq_length 128, {args.steps} steps, "
        f"{args.threads} threads; each side in a fresh process (lower is better)"
    )
    speed = f", {ours['pairs_per_s']:.1f} pairs/s" if ours.get("pairs_per_s") else ""
    print_table(
        [
            (
                "sentence-transformers trainer process (baseline)",
                f"{st['peak_mib']:.0f} MiB",
                "1.00x",
                f"{st['pairs_per_s']:.1f} pairs/s",
            ),
            (
                "raystx Ray Train worker (1 worker)",
                f"{ours['peak_mib']:.0f} MiB",
                f"{ours['peak_mib'] / st['peak_mib']:.2f}x",
                f"{ours['begin_mib']:.0f} MiB when the loop starts; {ours['workers_seen']} worker process(es){speed}",
            ),
            (
                "raystx driver process",
                f"{ours['driver_peak_mib']:.0f} MiB",
                f"{ours['driver_peak_mib'] / st['peak_mib']:.2f}x",
                "holds the model too (loaded back after training)",
            ),
            (
                "raystx: all processes of the child's Ray",
                f"{ours['tree_peak_mib']:.0f} MiB",
                f"{ours['tree_peak_mib'] / st['peak_mib']:.2f}x",
                "peak of the summed RSS (GCS, raylet, controller, worker; shared pages counted per process)",
            ),
        ]
    )


if __name__ == "__main__":
    main()
