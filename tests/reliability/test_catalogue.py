"""docs/bad-inputs.md is generated from the tests in this folder: every entry belongs to an existing test (each
test checks its own entries word for word when it runs, see bad_input_catalogue.py)."""

from __future__ import annotations

import os
import re

import pytest

pytest_plugins = ["bad_input_catalogue"]  # registered (and assert-rewritten) before the imports below
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RAYSTX_CATALOGUE_DIR")), reason="the catalogue is being regenerated"
)


def test_the_catalogue_starts_with_its_header_and_has_no_duplicate_entries():
    from bad_input_catalogue import DOC, HEADER, doc_keys

    text = DOC.read_text()
    assert text.startswith(HEADER)
    keys = doc_keys(text)
    assert keys and len(keys) == len(set(keys))


def test_every_catalogue_entry_belongs_to_an_existing_test():
    from bad_input_catalogue import DOC, ROOT, doc_keys

    stale = []
    for key in doc_keys(DOC.read_text()):
        path, rest = key.split("::", 1)
        function = re.match(r"\w+", rest).group(0)
        source = ROOT / path
        if not source.exists() or not re.search(rf"^def {function}\(", source.read_text(), flags=re.M):
            stale.append(key)
    assert not stale, (
        f"entries of removed tests: {stale}; regenerate: PYTHONPATH=. python tests/reliability/bad_input_catalogue.py"
    )
