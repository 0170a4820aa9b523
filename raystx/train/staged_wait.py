"""The workers' wait for datasets staged while they started (``raystx.data.background``).

``await_staged_data(payload, rank)`` runs first in ``build_loop``, before anything reads the data. When the
payload holds pending sources (a large CSV/JSON/``IterableDataset`` input the driver checked on its first rows
only), it blocks on the staging passes (``ray.get``: no polling), replaces each pending source by its full one,
and checks the whole dataset against its loss as the driver checks a dataset staged up front
(``validate_sources`` with the pass's every-row scan: the row count against one global batch, values in every
row, the sampled rows). A failed pass or a failed check raises the same error the up-front path raises on the
driver; every rank raises it, before any step, so no checkpoint is written. Everything that needs the row
counts (the epoch plan, ``max_steps``, the scheduler) is built after this, so it is the same as if the data
had been staged before the workers started.

In: the ``WorkerPayload`` (sources, losses, label kinds, ``data_check_batch_size``), the worker's rank.
Out: the payload's ``sources`` and ``label_kinds`` completed in place. A no-op without pending sources.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

logger = logging.getLogger("raystx.train")


def await_staged_data(payload: Any, rank: int) -> None:
    """Wait for the background staging of ``payload``'s pending sources and check them (see the module)."""
    from raystx.data.background import pending_sources, resolve_pending
    from raystx.data.sources import validate_sources

    pending = pending_sources(payload.sources)
    if not pending:
        return
    started = time.perf_counter()
    full, scans = resolve_pending(payload.sources)
    waited = time.perf_counter() - started
    with warnings.catch_warnings():
        if rank != 0:  # the same warnings on every rank: rank 0 shows them
            warnings.simplefilter("ignore")
        matched = validate_sources(
            full,
            {name: payload.losses[name] for name in full},
            global_batch_size=max(1, int(payload.data_check_batch_size)),
            drop_last=payload.args.dataloader_drop_last,
            scans=scans,
        )
    payload.sources = {name: full.get(name, source) for name, source in payload.sources.items()}
    payload.label_kinds = {**payload.label_kinds, **{name: matched[name].label for name in full}}
    if rank == 0:
        counts = ", ".join(f"{name!r}: {source.num_rows} rows" for name, source in full.items())
        logger.info("Data staged while the workers started (%s); waited %.1f s for it", counts, waited)
