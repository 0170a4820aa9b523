"""Silence transformers' own progress bars where raystx reads or writes weights behind the user's back.

``no_weight_bars()`` is a context manager: inside it, ``transformers``' tqdm bars ("Loading weights", "Writing
model shards") are off, and the previous setting is restored on exit. Used where the bars describe an internal
step rather than something the user asked for: a worker's checkpoint save, the driver loading the final
checkpoint back into the user's model. A user's own ``SentenceTransformer(path)`` keeps its bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def no_weight_bars() -> Iterator[None]:
    """Turn transformers' progress bars off for the block (restored after, even on error)."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hub_was_off = hub_utils.are_progress_bars_disabled()
    if was_on:
        hf_logging.disable_progress_bar()  # also turns the Hub's bars off
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()  # turns the Hub's bars back on: keep a user's "off" there
            if hub_was_off:
                hub_utils.disable_progress_bars()
