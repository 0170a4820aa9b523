"""What ``jobs/train.py``, ``jobs/tune.py``, ``jobs/eval.py`` (``raystx evaluate``) and ``jobs/mine.py`` share: parse the job's arguments, add the
overrides the environment asks for, and run the ``raystx`` command line in this process.

``${VAR}`` references in the config's values are filled in from this process's environment by the config
loader itself (``raystx.config.read_raw``, the same for ``raystx train|validate|eval|tune``). Overrides, later
ones winning: the file, then ``RAYSTX_OVERRIDES`` (``key=value`` items separated by spaces, shell-quoted;
handy in a runtime_env or a RayJob's pod env, e.g. ``RAYSTX_OVERRIDES="scaling.use_gpu=true
scaling.num_workers=4"``), then ``--set``.
The exit status is the command's own (0 on success, 1 on a failed run, 2 on a bad config), so
``ray job submit`` and KubeRay report the training's status.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

OVERRIDES_ENV = "RAYSTX_OVERRIDES"
COMMANDS = ("train", "tune", "eval", "evaluate", "mine")


def parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``jobs/{command}.py``."""
    p = argparse.ArgumentParser(
        prog=f"jobs/{command}.py", description=f"Run `raystx {command}` as a Ray job (see jobs/README.md)."
    )
    p.add_argument("--config", required=True, help="the YAML experiment config")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    if command == "train":
        p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    if command == "eval":
        p.add_argument("--model", required=True, help="the model directory to evaluate")
    if command == "evaluate":
        p.add_argument("--model", help="the model directory to evaluate (sets model.name_or_path)")
    return p


class OverridesError(ValueError):
    """``RAYSTX_OVERRIDES`` holds an item that is not ``key.path=value``."""


def cli_args(command: str, argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``raystx`` argument list for ``jobs/{command}.py ARGV``. Arguments the job parser does not know
    are passed on to ``raystx {command}`` unchanged (for options ``raystx tune`` may add)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown job command {command!r}; expected one of {COMMANDS}")
    environ = os.environ if environ is None else environ
    ns, extra = parser(command).parse_known_args(list(argv))
    from_env = shlex.split(environ.get(OVERRIDES_ENV, ""))
    bad = [item for item in from_env if "=" not in item]
    if bad:
        raise OverridesError(f"{OVERRIDES_ENV} items must be key.path=value; got {bad}")
    args = [command, str(ns.config)]  # a missing or broken file is reported by `raystx` itself
    if command == "evaluate" and ns.model:
        from_env.append(f"model.name_or_path={ns.model}")
    for item in [*from_env, *ns.overrides]:
        args += ["--set", item]
    if getattr(ns, "resume", False):
        args.append("--resume")
    if command == "eval":
        args += ["--model", ns.model]
    return args + list(extra)


def run_cli(args: Sequence[str]) -> int:
    """Run ``raystx ARGS`` in this process and return its exit status."""
    from typer.main import get_command

    from raystx.cli import app

    try:
        get_command(app).main(args=list(args), prog_name="raystx", standalone_mode=True)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def main(command: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs/{command}.py``: build the ``raystx`` arguments and run them."""
    try:
        args = cli_args(command, sys.argv[1:] if argv is None else argv)
    except OverridesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("raystx " + shlex.join(args), file=sys.stderr, flush=True)
    return run_cli(args)
