"""RerankingEvaluator: rank each query's positives and negatives by embedding similarity (MAP, MRR@k, NDCG@k)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.util import cos_sim

logger = logging.getLogger(__name__)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def checked_samples(
    samples: list[dict[str, Any]] | dict[Any, dict[str, Any]], name: str = ""
) -> list[dict[str, Any]]:
    """The samples that have positives and negatives, with ``positive``/``negative`` as lists.

    Raises ``ValueError`` naming the sample for a missing ``query``/``positive``/``negative`` key, and when no
    sample is left (the metrics would be the mean of nothing); warns when some samples are dropped.
    """
    where = f"RerankingEvaluator{f' {name!r}' if name else ''}"
    keyed = list(samples.items()) if isinstance(samples, dict) else list(enumerate(samples))
    kept = []
    for key, sample in keyed:
        missing = [
            k for k in ("query", "positive", "negative") if not isinstance(sample, dict) or k not in sample
        ]
        if missing:
            raise ValueError(
                f"{where}: sample {key!r} lacks {missing}; every sample is a dict "
                '{"query": str, "positive": [str, ...], "negative": [str, ...]}'
            )
        normalized = {
            **sample,
            "positive": _as_list(sample["positive"]),
            "negative": _as_list(sample["negative"]),
        }
        if normalized["positive"] and normalized["negative"]:
            kept.append(normalized)
    if not kept:
        raise ValueError(
            f"{where}: none of the {len(keyed)} samples has both a positive and a negative, so there is nothing "
            "to rank; give each sample at least one of each"
        )
    if len(kept) < len(keyed):
        logger.warning(
            "%s: %d of %d samples have no positive or no negative and are skipped",
            where,
            len(keyed) - len(kept),
            len(keyed),
        )
    return kept


class RerankingEvaluator(SentenceEvaluator):
    """For each sample ``{"query": q, "positive": [...], "negative": [...]}`` rank positives+negatives by
    ``similarity_fct(query, doc)`` and report ``map`` (mean average precision), ``mrr@{at_k}`` and
    ``ndcg@{at_k}`` (primary). Samples without positives or negatives are dropped (logged); malformed samples
    and a set with nothing to rank raise ``ValueError`` at construction.

    Args:
        samples: list (or dict of) samples as above; ``positive``/``negative`` may be single strings.
        at_k: cut-off for MRR and NDCG. name, write_csv, batch_size, show_progress_bar, truncate_dim: as usual.
        similarity_fct: (1, d) x (n, d) -> (1, n) scores (default cosine).
        use_batched_encoding: encode all queries and documents at once (True) or sample by sample.
        mrr_at_k: deprecated alias of ``at_k``.
    """

    def __init__(
        self,
        samples: list[dict[str, Any]] | dict[Any, dict[str, Any]],
        at_k: int = 10,
        name: str = "",
        write_csv: bool = True,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        batch_size: int = 64,
        show_progress_bar: bool = False,
        use_batched_encoding: bool = True,
        truncate_dim: int | None = None,
        mrr_at_k: int | None = None,
    ) -> None:
        super().__init__()
        if mrr_at_k is not None:
            logger.warning(
                "The `mrr_at_k` parameter has been deprecated; please use `at_k=%s` instead.", mrr_at_k
            )
            at_k = mrr_at_k
        self.at_k = at_k
        self.name = name
        self.write_csv = write_csv
        self.similarity_fct = similarity_fct
        self.batch_size = batch_size
        self.show_progress_bar = bool(show_progress_bar)
        self.use_batched_encoding = use_batched_encoding
        self.truncate_dim = truncate_dim
        self.samples = checked_samples(samples, name)
        self.csv_file = "RerankingEvaluator" + (f"_{name}" if name else "") + f"_results_@{at_k}.csv"
        self.csv_headers = ["epoch", "steps", "MAP", f"MRR@{at_k}", f"NDCG@{at_k}"]
        self.primary_metric = f"ndcg@{at_k}"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Score every sample; append a CSV row when ``output_path`` is given; returns the metrics."""
        logger.info(
            "RerankingEvaluator: Evaluating the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        scores = self.compute_metrics(model)
        logger.info("MAP: %.2f  MRR@%d: %.2f  NDCG@%d: %.2f", scores["map"] * 100, self.at_k,
                    scores["mrr"] * 100, self.at_k, scores["ndcg"] * 100)  # fmt: skip
        if output_path is not None and self.write_csv:
            row = [epoch, steps, scores["map"], scores["mrr"], scores["ndcg"]]
            append_csv_row(output_path, self.csv_file, self.csv_headers, row)
        metrics = {
            "map": scores["map"],
            f"mrr@{self.at_k}": scores["mrr"],
            f"ndcg@{self.at_k}": scores["ndcg"],
        }
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _embed(self, model: Any, texts: list[str], role: str) -> Tensor:
        return encode(
            model,
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            role=role,  # type: ignore[arg-type]
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
        )

    def _embeddings(self, model: Any):
        """Yield ``(query_embedding (1, d), doc_embeddings (n, d), n_positive)`` per sample."""
        if self.use_batched_encoding:
            queries = self._embed(model, [s["query"] for s in self.samples], "query")
            docs = self._embed(
                model, [d for s in self.samples for d in s["positive"] + s["negative"]], "document"
            )
            offset = 0
            for i, s in enumerate(self.samples):
                n = len(s["positive"]) + len(s["negative"])
                yield queries[i : i + 1], docs[offset : offset + n], len(s["positive"])
                offset += n
        else:
            for s in self.samples:
                query = self._embed(model, [s["query"]], "query")
                yield query, self._embed(model, s["positive"] + s["negative"], "document"), len(s["positive"])

    def compute_metrics(self, model: Any) -> dict[str, float]:
        """Mean ``map``, ``mrr`` (@at_k) and ``ndcg`` (@at_k) over samples."""
        from sklearn.metrics import average_precision_score, ndcg_score

        aps, mrrs, ndcgs = [], [], []
        for query, docs, n_pos in self._embeddings(model):
            with torch.no_grad():
                scores = self.similarity_fct(query, docs)
            scores = scores[0] if scores.dim() > 1 else scores
            relevant = np.zeros(len(docs), dtype=int)
            relevant[:n_pos] = 1
            order = torch.sort(scores, descending=True, stable=True).indices[: self.at_k].tolist()
            first = next((rank for rank, idx in enumerate(order) if relevant[idx]), None)
            mrrs.append(0 if first is None else 1 / (first + 1))
            score_list = scores.detach().cpu().tolist()
            ndcgs.append(ndcg_score([relevant.tolist()], [score_list], k=self.at_k))
            aps.append(average_precision_score(relevant.tolist(), score_list))
        return {"map": np.mean(aps), "mrr": np.mean(mrrs), "ndcg": np.mean(ndcgs)}

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"at_k": self.at_k}
        if self.truncate_dim is not None:
            config["truncate_dim"] = self.truncate_dim
        return config
