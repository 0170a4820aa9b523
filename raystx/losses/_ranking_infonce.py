"""The shared InfoNCE core of MultipleNegativesRankingLoss and its cached variant.

The loss is split in two steps so that the plain loss and the GradCache loss use the same arithmetic:

* :func:`gather_columns` turns the per-column local embeddings into a :class:`GlobalBatch` (the anchors and
  every candidate column of the whole global batch, gathered with gradient across workers when asked).
* :func:`infonce_rows` returns the per-anchor loss for any subset of this rank's anchors, so the cached loss
  can walk the local anchors in chunks while the plain loss takes them all at once.

Candidate order in the scored matrix is column-major: all positives of the global batch (rank order), then
all ``negative_1`` of the global batch, then all ``negative_2`` ... so candidate ``c * N + j`` is column ``c``
of global row ``j`` (``N`` = global batch size).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from raystx.distributed import all_gather_with_grad, local_offset

logger = logging.getLogger(__name__)

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction")
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


@dataclass
class GlobalBatch:
    """Anchors and candidate columns of the global batch, plus where this rank's rows sit in it.

    ``queries``: (N, d) anchors of all ranks; ``docs``: one (N, d) tensor per candidate column (positive
    first, then the hard negatives in column order); ``offset``: global index of this rank's first row;
    ``local_size``: number of rows this rank holds.
    """

    queries: Tensor
    docs: list[Tensor]
    offset: int
    local_size: int

    @property
    def global_size(self) -> int:
        return self.queries.shape[0]

    @property
    def docs_all(self) -> Tensor:
        """(num_columns * N, d) candidates in column-major order."""
        return torch.cat(self.docs, dim=0)

    def local_rows(self) -> Tensor:
        """Global indices of this rank's rows."""
        return torch.arange(self.offset, self.offset + self.local_size, device=self.queries.device)


def gather_columns(embeddings: Sequence[Tensor], gather: bool) -> GlobalBatch:
    """Build the global batch from ``embeddings`` = [anchor, positive, negative_1, ...] (each (B, d))."""
    if len(embeddings) < 2:
        raise ValueError(f"Expected at least 2 embedding columns (anchor, positive), got {len(embeddings)}")
    local_size = embeddings[0].shape[0]
    columns = [all_gather_with_grad(e) for e in embeddings] if gather else list(embeddings)
    offset = local_offset(local_size) if gather else 0
    return GlobalBatch(queries=columns[0], docs=columns[1:], offset=offset, local_size=local_size)


def validate_options(
    scale: float,
    directions: Sequence[str],
    partition_mode: str,
    hardness_mode: str | None,
    hardness_strength: float,
) -> tuple[str, ...]:
    """Check the ranking-loss options; return ``directions`` as a tuple. Raises ``ValueError`` on bad input."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    directions = tuple(directions)
    if not directions:
        raise ValueError("directions must name at least one direction")
    unknown = set(directions) - set(DIRECTIONS)
    if unknown:
        raise ValueError(f"Unknown directions {sorted(unknown)}; expected a subset of {DIRECTIONS}")
    if "query_to_doc" not in directions:
        raise ValueError("directions must include 'query_to_doc' (it holds the positive pair)")
    if partition_mode not in PARTITION_MODES:
        raise ValueError(f"partition_mode must be one of {PARTITION_MODES}, got {partition_mode!r}")
    if partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(directions):
        raise ValueError(
            "partition_mode='per_direction' needs the positive in every direction's candidates; "
            "'query_to_query' and 'doc_to_doc' do not contain it. Use partition_mode='joint'."
        )
    if hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"hardness_mode must be one of {HARDNESS_MODES}, got {hardness_mode!r}")
    if hardness_strength < 0:
        raise ValueError(f"hardness_strength must be non-negative, got {hardness_strength}")
    return directions


def _hardness_penalty(
    q2d: Tensor, own: Tensor, global_size: int, mode: str | None, strength: float
) -> Tensor | None:
    """``strength * stop_grad(q2d)`` on the negatives ``mode`` selects, zero elsewhere (None: no penalty).

    ``own`` is the (n, num_columns * N) mask of each anchor's own candidates (its positive and its hard
    negatives); the first ``N`` candidate columns are positives.
    """
    if mode is None or strength <= 0:
        return None
    is_positive_column = torch.zeros_like(own)
    is_positive_column[:, :global_size] = True
    if mode == "in_batch_negatives":
        selected = ~own
    elif mode == "hard_negatives":
        selected = own & ~is_positive_column
    else:  # all_negatives: everything except the anchor's own positive
        selected = ~(own & is_positive_column)
    return strength * q2d.detach() * selected


def infonce_rows(
    batch: GlobalBatch,
    rows: Tensor,
    similarity_fct: Callable[[Tensor, Tensor], Tensor],
    scale: float,
    directions: Sequence[str],
    partition_mode: str,
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
) -> Tensor:
    """Per-anchor InfoNCE loss (shape ``(len(rows),)``) for the global rows ``rows`` of ``batch``.

    The positive logit of anchor ``i`` is ``scale * sim(q_i, p_i)``; the normaliser is a log-sum-exp over
    the selected directions (one joint softmax, or the mean of one log-sum-exp per direction).
    """
    n = rows.shape[0]
    big_n = batch.global_size
    num_columns = len(batch.docs)
    arange = torch.arange(n, device=rows.device)
    queries = batch.queries[rows]
    positives = batch.docs[0][rows]
    own_rows = torch.zeros(n, big_n, dtype=torch.bool, device=rows.device)
    own_rows[arange, rows] = True
    own_candidates = own_rows.repeat(1, num_columns)

    logits: dict[str, Tensor] = {}
    q2d = similarity_fct(queries, batch.docs_all)
    penalty = _hardness_penalty(q2d, own_candidates, big_n, hardness_mode, hardness_strength)
    logits["query_to_doc"] = q2d * scale if penalty is None else q2d * scale + penalty
    if "query_to_query" in directions:
        logits["query_to_query"] = (similarity_fct(queries, batch.queries) * scale).masked_fill(
            own_rows, float("-inf")
        )
    if "doc_to_query" in directions:
        logits["doc_to_query"] = similarity_fct(batch.queries, positives).transpose(0, 1) * scale
    if "doc_to_doc" in directions:
        logits["doc_to_doc"] = (
            similarity_fct(batch.docs_all, positives).transpose(0, 1) * scale
        ).masked_fill(own_candidates, float("-inf"))

    positive_logit = logits["query_to_doc"][arange, rows]
    if partition_mode == "joint":
        log_normaliser = torch.logsumexp(torch.cat(list(logits.values()), dim=1), dim=1)
    else:
        log_normaliser = torch.stack([torch.logsumexp(m, dim=1) for m in logits.values()]).mean(dim=0)
    return log_normaliser - positive_logit


def num_negatives_per_anchor(batch: GlobalBatch) -> int:
    """How many negatives each anchor is scored against in the ``query_to_doc`` term (for logging)."""
    return batch.global_size * len(batch.docs) - 1


def similarity_name(fn: Callable) -> str:
    """Readable name of a similarity callable for config dicts (``cos_sim``, ``dot_score``, ...)."""
    if isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


class InfoNCEOptionsMixin:
    """Holds the InfoNCE hyper-parameters as plain attributes (so ``loss.scale = 30`` works) and applies them."""

    scale: float
    similarity_fct: Callable[[Tensor, Tensor], Tensor]
    directions: tuple[str, ...]
    partition_mode: str
    hardness_mode: str | None
    hardness_strength: float
    gather_across_devices: bool

    def set_infonce_options(
        self,
        scale: float,
        similarity_fct: Callable[[Tensor, Tensor], Tensor],
        gather_across_devices: bool,
        directions: Sequence[str],
        partition_mode: str,
        hardness_mode: str | None,
        hardness_strength: float,
    ) -> None:
        """Validate and store the options (raises ``ValueError`` on an invalid combination)."""
        self.directions = validate_options(
            scale, directions, partition_mode, hardness_mode, hardness_strength
        )
        if hardness_mode is not None and hardness_strength == 0.0:
            logger.warning("hardness_mode=%r has no effect while hardness_strength=0.0", hardness_mode)
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.gather_across_devices = gather_across_devices
        self.partition_mode = partition_mode
        self.hardness_mode = hardness_mode
        self.hardness_strength = hardness_strength

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def infonce(self, batch: GlobalBatch, rows: Tensor) -> Tensor:
        """Per-anchor loss of the global rows ``rows`` under the stored options."""
        return infonce_rows(
            batch,
            rows,
            self.similarity_fct,
            self.scale,
            self.directions,
            self.partition_mode,
            self.hardness_mode,
            self.hardness_strength,
        )

    def infonce_config(self) -> dict[str, object]:
        return {
            "scale": self.scale,
            "similarity_fct": similarity_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices,
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }
