"""Keeps the train core readable: no function body in ``raystx/train/`` longer than ~60 lines (issue 18).

Counted from the first statement after the docstring to the last line of the body, as a reader scrolls it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import raystx.train

LIMIT = 60
TRAIN = Path(raystx.train.__file__).parent


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_in_the_train_core_is_longer_than_the_limit():
    long = []
    for path in sorted(TRAIN.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > LIMIT:
                long.append(f"{path.name}:{node.lineno} {node.name} ({_body_lines(node)} lines)")
    assert not long, "split these functions: " + ", ".join(long)


def test_the_step_loop_module_holds_only_the_loop():
    """loop.py: the loop, its step results and state; assembly, data position and resume live elsewhere."""
    tree = ast.parse((TRAIN / "loop.py").read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert "TrainLoop" in names
    assert not names & {"WorkerPayload", "train_worker", "DataCursor", "restore_latest", "set_seed"}
