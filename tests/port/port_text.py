"""The port of a sentence-transformers training script to raystx, as plain text edits (what README promises).

``port_script(source)`` makes exactly two edits:

1. the literal substitution ``sentence_transformers`` -> ``raystx`` over the whole text;
2. ``scaling_config=ScalingConfig(num_workers=N),`` right after the opening parenthesis of every call whose line
   ends with the marker comment ``# PORT: scaling_config`` (the trainer's constructor, or ``model.fit(``), and
   ``from ray.train import ScalingConfig`` on its own line before the script's first top-level import (after any
   ``from __future__`` import).

A marker line must end with ``(  # PORT: scaling_config``; anything else is an error, so a script cannot be
ported in a way the user could not reproduce by hand.
"""

from __future__ import annotations

import re

MARKER = "# PORT: scaling_config"
IMPORT_LINE = "from ray.train import ScalingConfig"
_FIRST_IMPORT = re.compile(r"^(import |from (?!__future__))", re.MULTILINE)


def port_script(source: str, num_workers: int = 2) -> str:
    """``source`` with the package renamed and ``scaling_config`` added at each marked call (see module doc)."""
    if MARKER not in source:
        raise ValueError(f"the script has no {MARKER!r} marker: nothing would receive the scaling_config")
    text = source.replace("sentence_transformers", "raystx")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if MARKER not in line:
            continue
        code = line.split(MARKER)[0].rstrip()
        if not code.endswith("("):
            raise ValueError(f"line {i + 1}: {MARKER!r} must follow a call's opening parenthesis: {line!r}")
        lines[i] = f"{code}scaling_config=ScalingConfig(num_workers={num_workers}),  {MARKER}"
    text = "\n".join(lines)
    first = _FIRST_IMPORT.search(text)
    if first is None:
        raise ValueError("the script has no top-level import to put the ScalingConfig import before")
    return text[: first.start()] + IMPORT_LINE + "\n" + text[first.start() :]
