"""The bad-input catalogue (docs/bad-inputs.md): what raystx says for each bad input, taken from the tests.

Tests in tests/reliability/ use the ``catalogue`` fixture to run a bad input and record what raystx said::

    def test_nan_label(catalogue):
        message = catalogue.raises(DatasetValidationError, validate, input="a NaN score at row 194")

Each recorded entry is rendered as one Markdown block keyed by the test's node id. In a normal test run the
fixture checks that exactly this block is in the committed docs/bad-inputs.md, so the document cannot drift
from what raystx really says. To regenerate the document after changing a message or adding a test, run::

    PYTHONPATH=. python tests/reliability/bad_input_catalogue.py

It runs the reliability tests with ``RAYSTX_CATALOGUE_DIR`` set (the fixture then writes the entries there as
JSON instead of checking them) and writes docs/bad-inputs.md from them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-inputs.md"
ENV = "RAYSTX_CATALOGUE_DIR"
FAST_S = 30.0
HEADER = """# Bad inputs and what raystx says

Generated from the tests in `tests/reliability/` (each test feeds the input and asserts the message); do not
edit by hand. Regenerate with `PYTHONPATH=. python tests/reliability/bad_input_catalogue.py`; a test fails
when this file differs from what raystx says. Paths of temporary files are shown as `<tmp>`.
"""
_TMP = re.compile(r"(/private)?/tmp/pytest-of-[^/\s'\"]+/pytest-\d+/[^/\s'\"]+")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


@dataclass
class Entry:
    """One bad input: where it is tested, what it is, how raystx answered and the message (normalized)."""

    key: str
    area: str
    input: str
    outcome: str
    message: str

    def render(self) -> str:
        """The Markdown block of this entry (the unit compared with the committed document)."""
        fence = "````" if "```" in self.message else "```"
        return f"### {self.input}\n\n<!-- {self.key} -->\n{self.outcome}\n\n{fence}text\n{self.message}\n{fence}\n"


def normalize(message: str) -> str:
    """Stable text: temporary paths become ``<tmp>``, object addresses are dropped, trailing blanks stripped."""
    message = _TMP.sub("<tmp>", message)
    message = _ADDRESS.sub("", message)
    return "\n".join(line.rstrip() for line in message.strip().splitlines())


def render(entries: list[Entry]) -> str:
    """The whole document: header, then one section per area (in the order of the test files)."""
    parts = [HEADER]
    area = None
    for entry in entries:
        if entry.area != area:
            area = entry.area
            parts.append(f"\n## {area}\n")
        parts.append("\n" + entry.render())
    return "".join(parts)


def doc_keys(text: str) -> list[str]:
    """The entry keys (``<!-- tests/...::test[...]#n -->``) in a rendered document."""
    return re.findall(r"^<!-- (tests/\S+) -->$", text, flags=re.M)


class Catalogue:
    """Per-test recorder; see the module docstring."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.node = request.node.nodeid
        self.area = getattr(request.module, "AREA", request.module.__name__)
        self.count = 0
        self.replacements: dict[str, str] = {}

    def replace(self, old: str, new: str) -> None:
        """Show ``old`` as ``new`` in recorded messages (e.g. a test's tmp_path)."""
        self.replacements[str(old)] = new

    def record(self, input: str, outcome: str, message: str) -> None:
        """Record (or check against the document) one entry for this test."""
        for old, new in self.replacements.items():
            message = message.replace(old, new)
        self.count += 1
        entry = Entry(f"{self.node}#{self.count}", self.area, input, outcome, normalize(message))
        out = os.environ.get(ENV)
        if out:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", entry.key)
            Path(out, name + ".json").write_text(json.dumps(asdict(entry)))
            return
        text = DOC.read_text() if DOC.exists() else ""
        assert entry.render() in text, (
            f"docs/bad-inputs.md does not hold this entry as raystx now says it:\n{entry.render()}\n"
            "Regenerate it: PYTHONPATH=. python tests/reliability/bad_input_catalogue.py"
        )

    def raises(
        self, exc_type: type[BaseException], fn: Callable[[], Any], *, input: str, limit_s: float = FAST_S
    ) -> str:
        """Run ``fn``; assert it raises ``exc_type`` within ``limit_s`` seconds; record and return the message."""
        start = time.monotonic()
        with pytest.raises(exc_type) as info:
            fn()
        elapsed = time.monotonic() - start
        assert elapsed < limit_s, f"took {elapsed:.1f} s to fail (limit {limit_s} s)"
        message = str(info.value)
        self.record(input, f"Raises `{type(info.value).__name__}`:", message)
        return message

    def warns(self, category: type[Warning], fn: Callable[[], Any], *, input: str) -> str:
        """Run ``fn``; assert it warns ``category`` (exactly one such warning); record and return the text."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
        found = [w for w in caught if issubclass(w.category, category)]
        assert len(found) == 1, f"expected one {category.__name__}, got {[str(w.message) for w in caught]}"
        message = str(found[0].message)
        self.record(input, f"Warns `{category.__name__}`:", message)
        return message


@pytest.fixture
def catalogue(request: pytest.FixtureRequest) -> Catalogue:
    """Records (input, what raystx said) for docs/bad-inputs.md; see the module docstring."""
    return Catalogue(request)


def regenerate() -> int:
    """Run tests/reliability/ in record mode and write docs/bad-inputs.md. Returns pytest's exit code."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, **{ENV: out})
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"],
            cwd=ROOT,
            env=env,
        )
        if code != 0:
            print("tests failed; docs/bad-inputs.md left unchanged", file=sys.stderr)
            return code
        entries = [Entry(**json.loads(p.read_text())) for p in Path(out).glob("*.json")]
    files = sorted({e.key.split("::")[0] for e in entries})
    entries.sort(
        key=lambda e: (files.index(e.key.split("::")[0]), e.key.split("#")[0], int(e.key.rsplit("#", 1)[1]))
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(entries))
    print(f"wrote {DOC} ({len(entries)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(regenerate())
