"""ParaphraseMiningEvaluator: mine the most similar sentence pairs and score them against known duplicates."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.util import cos_sim

logger = logging.getLogger(__name__)


def mine_pairs(
    embeddings: Tensor,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function=cos_sim,
) -> list[tuple[float, int, int]]:
    """The ``max_pairs`` best-scoring pairs ``(score, i, j)`` (i < j), best first, among each sentence's
    ``top_k`` nearest other sentences. Scores are computed chunk by chunk (queries x corpus)."""
    n = len(embeddings)
    candidates: dict[tuple[int, int], float] = {}
    for q_start in range(0, n, query_chunk_size):
        queries = embeddings[q_start : q_start + query_chunk_size]
        best_v = best_i = None
        for c_start in range(0, n, corpus_chunk_size):
            with torch.no_grad():
                scores = score_function(queries, embeddings[c_start : c_start + corpus_chunk_size])
            v, i = torch.topk(scores, min(top_k + 1, scores.shape[1]), dim=1)
            i = i + c_start
            if best_v is None:
                best_v, best_i = v, i
            else:
                v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
                best_v, pos = torch.topk(v, min(top_k + 1, v.shape[1]), dim=1)
                best_i = i.gather(1, pos)
        assert best_v is not None and best_i is not None
        for row, (values, indices) in enumerate(zip(best_v.tolist(), best_i.tolist())):
            i = q_start + row
            kept = [(j, s) for j, s in zip(indices, values) if j != i][:top_k]
            for j, score in kept:
                candidates.setdefault((min(i, j), max(i, j)), score)
    ranked = sorted(((score, i, j) for (i, j), score in candidates.items()), key=lambda t: t[0], reverse=True)
    return ranked[:max_pairs]


def transitive_closure(graph: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
    """Mark every pair inside each connected component (following ``True`` edges) as duplicates, in place."""
    seen: set[str] = set()
    for start in list(graph):
        if start in seen:
            continue
        component, stack = {start}, [n for n, dup in graph[start].items() if dup]
        while stack:
            node = stack.pop()
            if node not in component:
                component.add(node)
                stack.extend(n for n, dup in graph[node].items() if dup)
        members = list(component)
        if len(members) > 1:
            seen.update(members)
        for a in members:
            for b in members:
                if a != b:
                    graph[a][b] = True
    return graph


class ParaphraseMiningEvaluator(SentenceEvaluator):
    """Mine paraphrase pairs from ``sentences_map`` and compare them with the gold duplicates.

    Walking the mined pairs from most to least similar, reports the best-F1 cut: ``f1``, ``precision``,
    ``recall``, ``threshold`` (midpoint to the next score), and ``average_precision`` (primary metric) over all
    gold duplicate pairs.

    Args:
        sentences_map: id -> sentence. duplicates_list: (id1, id2) pairs; duplicates_dict: id1 -> id2 -> bool.
        add_transitive_closure: treat duplicates of duplicates as duplicates.
        query_chunk_size, corpus_chunk_size, max_pairs, top_k: mining limits (see :func:`mine_pairs`).
        show_progress_bar, batch_size, name, write_csv, truncate_dim: as usual.
    """

    def __init__(
        self,
        sentences_map: dict[str, str],
        duplicates_list: list[tuple[str, str]] | None = None,
        duplicates_dict: dict[str, dict[str, bool]] | None = None,
        add_transitive_closure: bool = False,
        query_chunk_size: int = 5000,
        corpus_chunk_size: int = 100000,
        max_pairs: int = 500000,
        top_k: int = 100,
        show_progress_bar: bool = False,
        batch_size: int = 16,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.ids = list(sentences_map)
        self.sentences = [sentences_map[i] for i in self.ids]
        self.name = name
        self.show_progress_bar = bool(show_progress_bar)
        self.batch_size = batch_size
        self.query_chunk_size = query_chunk_size
        self.corpus_chunk_size = corpus_chunk_size
        self.max_pairs = max_pairs
        self.top_k = top_k
        self.truncate_dim = truncate_dim
        self.write_csv = write_csv
        self._add_transitive_closure = add_transitive_closure

        duplicates: dict[str, dict[str, bool]] = defaultdict(lambda: defaultdict(bool))
        for a, row in (duplicates_dict or {}).items():
            for b, dup in row.items():
                duplicates[a][b] = dup
        for a, b in duplicates_list or []:
            if a in sentences_map and b in sentences_map:
                duplicates[a][b] = duplicates[b][a] = True
        if add_transitive_closure:
            duplicates = transitive_closure(duplicates)
        self.duplicates = duplicates
        gold = {
            tuple(sorted((a, b)))
            for a, row in list(duplicates.items())
            for b in list(row)
            if a in sentences_map and b in sentences_map and (duplicates[a][b] or duplicates[b][a])
        }
        self.total_num_duplicates = len(gold)
        self.csv_file = "paraphrase_mining_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "precision", "recall", "f1", "threshold", "average_precision"]
        self.primary_metric = "average_precision"

    def _is_duplicate(self, a: str, b: str) -> bool:
        return bool(self.duplicates.get(a, {}).get(b, False) or self.duplicates.get(b, {}).get(a, False))

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Mine pairs, compute the best-F1 cut and average precision; returns the metrics."""
        logger.info(
            "Paraphrase Mining Evaluation of the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        embeddings = encode(
            model,
            self.sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
        )
        pairs = mine_pairs(
            embeddings, self.query_chunk_size, self.corpus_chunk_size, self.max_pairs, self.top_k
        )
        logger.info("Number of candidate pairs: %d", len(pairs))
        metrics = self._score_pairs(pairs)
        if output_path is not None and self.write_csv:
            row = [epoch, steps] + [
                metrics[k] for k in ("precision", "recall", "f1", "threshold", "average_precision")
            ]
            append_csv_row(output_path, self.csv_file, self.csv_headers, row)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _score_pairs(self, pairs: list[tuple[float, int, int]]) -> dict[str, float]:
        """Best-F1 cut and average precision, cutting only between different scores."""
        n_extract = n_correct = previous_correct = 0
        best = {"f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": 0.0}
        ap = 0.0
        total = self.total_num_duplicates
        for idx, (score, i, j) in enumerate(pairs):
            n_extract += 1
            n_correct += self._is_duplicate(self.ids[i], self.ids[j])
            if idx + 1 < len(pairs) and pairs[idx + 1][0] == score:
                continue
            if n_correct > previous_correct:
                precision = n_correct / n_extract
                recall = n_correct / total if total > 0 else 0.0
                f1 = 2 * precision * recall / (precision + recall)
                ap += precision * (n_correct - previous_correct)
                if f1 > best["f1"]:
                    following = pairs[min(idx + 1, len(pairs) - 1)][0]
                    best = {
                        "f1": f1,
                        "precision": precision,
                        "recall": recall,
                        "threshold": (score + following) / 2,
                    }
            previous_correct = n_correct
        ap = ap / total if total > 0 else 0.0
        return {"average_precision": ap, **best}

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "add_transitive_closure": self._add_transitive_closure,
            "max_pairs": self.max_pairs,
            "top_k": self.top_k,
        }
        if self.truncate_dim is not None:
            config["truncate_dim"] = self.truncate_dim
        return config
