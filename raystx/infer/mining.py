"""``mine_hard_negatives``: sentence-transformers' hard-negative mining, with encoding and search on Ray.

The driver validates the options and de-duplicates texts; Ray actors holding model replicas
(``raystx.infer.replicas``: started for the call, or a running pool from ``start_multi_process_pool``) encode the
corpus (normalised, document prompt) in chunks, each keeping what it encoded as its corpus shard; the queries
are encoded by the same replicas and streamed in blocks of ``faiss_batch_size`` through the sharded search
(exact blocked matmul, or faiss ``IndexFlatIP`` per shard). The driver only ever holds
``(n_queries, range_max + max_positives)`` candidate ids and scores, then applies sentence-transformers' rules
(``raystx.infer.select``) and builds the output columns (``raystx.infer.formats``).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from raystx.infer.formats import FORMATS, build_columns
from raystx.infer.pool import InferencePool
from raystx.infer.select import SelectionRules, select_negatives

logger = logging.getLogger(__name__)

LAST_TIMINGS: dict[str, float] = {}
"""Seconds of the last call's phases, for benchmarks and logs: ``start`` (replicas started and loaded for this
call; 0 with a running pool or in-process), ``corpus`` (corpus encoded into shards), ``queries`` (queries
encoded), ``search`` (query blocks through the shards, merge included), ``total`` (all of ``_search``)."""


def _columns(dataset: Any, anchor: str | None, positive: str | None) -> tuple[str, str]:
    columns = list(dataset.column_names)
    for name, what in ((anchor, "anchor_column_name"), (positive, "positive_column_name")):
        if name is not None and name not in columns:
            raise ValueError(f"{what}={name!r} is not a column of the dataset; its columns are {columns}")
    anchor = anchor or columns[0]
    if positive is None:
        if len(columns) < 2:
            raise ValueError(
                f"the dataset has only the column(s) {columns}: mining needs an anchor and a positive column"
            )
        positive = columns[1]
    return anchor, positive


def _default_range_max(rules: dict[str, Any], num_negatives: int, range_min: int, max_positives: int) -> int:
    """Room for the positives plus ``num_negatives`` (ten times that when a filter may discard candidates)."""
    filtered = any(rules[key] is not None for key in ("absolute_margin", "relative_margin", "max_score"))
    return range_min + num_negatives * (10 if filtered else 1) + max_positives


def _load_model(model: Any) -> Any:
    if isinstance(model, (str, Path)):
        from raystx.models import SentenceTransformer

        return SentenceTransformer(str(model), device="cpu")
    return model


def _check_prompt(model: Any, prompt_name: str | None, what: str) -> None:
    if prompt_name is not None and prompt_name not in model.prompts:
        raise ValueError(
            f"{what}={prompt_name!r} is not one of the model's prompts {sorted(model.prompts)}; "
            "pass a prompt text with the matching *_prompt argument instead"
        )


def _check_pool(pool: Any) -> None:
    from raystx.infer.model_pool import EncodePool

    if not isinstance(pool, EncodePool):
        raise TypeError(
            "pool must be what model.start_multi_process_pool(...) returns (running replicas to reuse); got "
            f"{type(pool).__name__}. To size a pool for this call only, pass num_workers=/scaling_config="
        )
    if pool.closed:
        raise ValueError("this pool was stopped (stop_multi_process_pool); start a new one")


def mine_hard_negatives(
    dataset: Any,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool = False,
    use_multi_process: list[str] | bool = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    num_workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: int = 1,
    scaling_config: Any = None,
    seed: int | None = None,
    output_path: str | Path | None = None,
    pool: Any = None,
) -> Any:
    """Add hard negatives to (anchor, positive) pairs; returns a ``datasets.Dataset``.

    Arguments and output formats are those of ``sentence_transformers.util.mine_hard_negatives`` (same rows, same
    order for the same model and data). raystx adds, keyword-only: ``num_workers`` model replicas on Ray
    (``0``: encode and search in this process, no Ray; ``use_gpu``, ``cpus_per_worker`` = torch threads each; or a
    ``scaling_config`` with those fields; started for this call and ended at return), or ``pool``: the running
    replicas of ``model.start_multi_process_pool(...)``, reused across calls (no start-up; they encode the model
    as it was when the pool started; ``num_workers`` and the other sizing arguments are then ignored), ``seed``
    for ``sampling_strategy="random"`` (default: Python's global ``random``, as sentence-transformers) and
    ``output_path`` (also write the result as Parquet there). ``use_multi_process`` is ignored (the Ray pool
    replaces it); ``cross_encoder`` and ``cache_folder`` are not supported.
    """
    from datasets import Dataset

    if cross_encoder is not None:
        raise NotImplementedError(
            "raystx.util.mine_hard_negatives does not rescore with a cross_encoder (raystx has no CrossEncoder); "
            "pass cross_encoder=None"
        )
    if cache_folder is not None:
        raise NotImplementedError("cache_folder is not supported by raystx's mine_hard_negatives; pass None")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: mining needs (anchor, positive) rows")
    if faiss_batch_size <= 0:
        raise ValueError(f"faiss_batch_size must be a positive integer, got {faiss_batch_size}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if sampling_strategy not in ("top", "random"):
        raise ValueError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}")
    if use_faiss:
        try:
            import faiss  # noqa: F401
        except ImportError as exc:
            raise ImportError("use_faiss=True needs faiss: pip install 'raystx[faiss]' (faiss-cpu)") from exc
    if use_multi_process:
        logger.info("use_multi_process is ignored: raystx encodes on %d Ray worker(s)", num_workers)
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("as_triplets is deprecated; using output_format=%r", output_format)
    if margin is not None:
        absolute_margin = margin
        logger.warning("margin is deprecated; using absolute_margin=%r", margin)
    if output_format == "n-tuple-scores":
        output_format, output_scores = "n-tuple", True
    if include_positives and output_format != "n-tuple":
        logger.warning("include_positives=True keeps the ranking order: output_format is set to 'n-tuple'")
        output_format = "n-tuple"
    if output_format not in FORMATS:
        raise ValueError(f"output_format must be one of {FORMATS}, got {output_format!r}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got num_negatives={num_negatives}")
    if range_min < 0:
        raise ValueError(f"range_min must be non-negative, got range_min={range_min}")

    anchor_col, positive_col = _columns(dataset, anchor_column_name, positive_column_name)
    rows_anchor = [str(t) for t in dataset[anchor_col]]
    rows_positive = [str(t) for t in dataset[positive_col]]
    max_positives = max(Counter(rows_anchor).values())
    filters = {
        "absolute_margin": absolute_margin,
        "relative_margin": relative_margin,
        "max_score": max_score,
        "min_score": min_score,
    }
    if range_max is None:
        range_max = _default_range_max(filters, num_negatives, range_min, max_positives)
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    if range_min >= range_max:
        raise ValueError(f"range_min must be smaller than range_max, got {range_min} and {range_max}")
    if num_negatives > range_max - range_min:
        raise ValueError(
            f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates remain "
            f"after skipping the first range_min={range_min} of range_max={range_max}; decrease num_negatives "
            "or range_min, or increase range_max"
        )
    if pool is not None:
        _check_pool(pool)
    elif scaling_config is not None:
        pool = InferencePool.from_scaling_config(scaling_config)
    elif num_workers == 0:
        pool = None  # in this process, no Ray
    else:
        pool = InferencePool(num_workers=num_workers, use_gpu=use_gpu, cpus_per_worker=cpus_per_worker)
    model = _load_model(model)
    if query_prompt is None:
        _check_prompt(model, query_prompt_name, "query_prompt_name")
    if corpus_prompt is None:
        _check_prompt(model, corpus_prompt_name, "corpus_prompt_name")

    # unique texts: the corpus (given corpus, then positives), the queries; positives per unique query
    # (an id map of the positives only: one of the whole corpus would cost ~90 MiB per million passages)
    full_corpus = list(dict.fromkeys(itertools.chain(corpus if corpus is not None else [], rows_positive)))
    wanted = set(rows_positive)
    corpus_id = {text: i for i, text in enumerate(full_corpus) if text in wanted}
    del wanted
    queries = list(dict.fromkeys(rows_anchor))
    query_id = {text: i for i, text in enumerate(queries)}
    positive_ids: list[list[int]] = [[] for _ in queries]
    for query, positive in zip(rows_anchor, rows_positive):
        own = positive_ids[query_id[query]]
        if corpus_id[positive] not in own:
            own.append(corpus_id[positive])
    if verbose and len(queries) != len(rows_anchor):
        print(f"Found {len(queries)} unique queries out of {len(rows_anchor)} total queries.")

    k_total = range_max + max_positives
    scores, indices, positive_scores = _search(
        model, full_corpus, queries, positive_ids, pool, k_total, batch_size, faiss_batch_size, use_faiss,
        (query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name), verbose,
    )  # fmt: skip

    rules = SelectionRules(
        range_min=range_min,
        range_max=range_max,
        num_negatives=num_negatives,
        sampling_strategy=sampling_strategy,
        include_positives=include_positives,
        **filters,
    )
    rng = random.Random(seed) if seed is not None else None
    neg_ids, neg_scores = select_negatives(scores, indices, positive_ids, positive_scores, rules, rng)
    columns = build_columns(
        output_format, output_scores, anchor_col, positive_col, queries, full_corpus,
        positive_ids, positive_scores, neg_ids, neg_scores,
    )  # fmt: skip
    result = Dataset.from_dict(columns)
    if verbose:
        _report(result, rules, positive_scores, neg_scores)
    if output_path is not None:
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        result.to_parquet(str(output_path))
    return result


def _search(
    model: Any,
    corpus: list[str],
    queries: list[str],
    positive_ids: list[list[int]],
    pool: InferencePool | Any | None,
    k: int,
    batch_size: int,
    query_block: int,
    use_faiss: bool,
    prompts: tuple[str | None, str | None, str | None, str | None],
    verbose: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[list[float]]]:
    """Candidate (scores, ids), each (n_queries, k) sorted by score, and every query's positive scores.

    ``pool=None`` runs in this process (no Ray); an ``InferencePool`` starts that many model replicas for this
    call (ended at return); an ``EncodePool`` (``start_multi_process_pool``) lends its running replicas. The
    replicas encode the corpus and each keeps the shard it encoded; queries stream through them in blocks.
    """
    from raystx.infer.search import LocalSearch

    LAST_TIMINGS.clear()
    started = time.perf_counter()
    query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name = prompts
    encode_kwargs = {"batch_size": batch_size, "normalize_embeddings": True}
    replicas: Any = None
    own_replicas = False
    if pool is None:
        emb = model.encode_document(
            corpus, prompt=corpus_prompt, prompt_name=corpus_prompt_name, batch_size=batch_size,
            normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=verbose,
        )  # fmt: skip
        search: Any = LocalSearch(np.arange(len(corpus)), emb, model.similarity_fn_name, use_faiss)

        def encode_queries(texts: list[str]) -> np.ndarray:
            return model.encode_query(
                texts, prompt=query_prompt, prompt_name=query_prompt_name, convert_to_numpy=True,
                show_progress_bar=False, **encode_kwargs,
            )  # fmt: skip

        LAST_TIMINGS["start"] = 0.0
    else:
        from raystx.infer.replicas import ReplicaPool, ReplicaSearch

        if isinstance(pool, InferencePool):
            replicas, own_replicas = ReplicaPool(model, pool), True
        else:
            replicas = pool.replicas
        try:
            replicas.wait_ready()
            LAST_TIMINGS["start"] = time.perf_counter() - started if own_replicas else 0.0
            search = ReplicaSearch(replicas, model.similarity_fn_name, use_faiss)
            search.load(
                corpus, "document", corpus_prompt, {**encode_kwargs, "prompt_name": corpus_prompt_name},
                progress="Encoding corpus" if verbose else None,
            )  # fmt: skip
        except BaseException:
            if own_replicas:
                replicas.close()
            raise

        def encode_queries(texts: list[str]) -> np.ndarray:
            return replicas.encode(
                texts, "query", query_prompt, {**encode_kwargs, "prompt_name": query_prompt_name}
            )

    LAST_TIMINGS["corpus"] = time.perf_counter() - started - LAST_TIMINGS["start"]
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    pos_scores: list[list[float]] = [[] for _ in queries]
    LAST_TIMINGS["queries"] = LAST_TIMINGS["search"] = 0.0
    try:
        for start in range(0, len(queries), query_block):
            tick = time.perf_counter()
            embeddings = encode_queries(queries[start : start + query_block])
            rows = np.arange(start, start + len(embeddings), dtype=np.int64)
            LAST_TIMINGS["queries"] += time.perf_counter() - tick
            tick = time.perf_counter()
            pair_rows = np.array([r for r, q in enumerate(rows) for _ in positive_ids[q]], dtype=np.int64)
            pair_ids = np.array([p for q in rows for p in positive_ids[q]], dtype=np.int64)
            top_scores, top_ids, pair_scores = search.search(embeddings, k, pair_rows, pair_ids)
            scores[rows], ids[rows] = top_scores, top_ids
            offset = 0
            for q in rows:
                n = len(positive_ids[q])
                pos_scores[q] = [float(s) for s in pair_scores[offset : offset + n]]
                offset += n
            LAST_TIMINGS["search"] += time.perf_counter() - tick
            if verbose:
                print(
                    f"Searched {start + len(rows)}/{len(queries)} queries against {len(corpus)} passages",
                    flush=True,
                )
    finally:
        search.close()
        if own_replicas:
            replicas.close()
    LAST_TIMINGS["total"] = time.perf_counter() - started
    return torch.from_numpy(scores), torch.from_numpy(ids), pos_scores


def _report(
    result: Any, rules: SelectionRules, positive_scores: list[list[float]], neg_scores: torch.Tensor
) -> None:
    """Print a short summary: rows, mean positive/negative score, candidates skipped by each rule."""
    pos = np.array([s for row in positive_scores for s in row], dtype=np.float64)
    neg = neg_scores[torch.isfinite(neg_scores)].double().numpy()
    print(f"Mined {len(result):,} rows; {len(neg):,} negatives for {len(positive_scores):,} queries.")
    if len(pos) and len(neg):
        print(f"Mean score: positive {pos.mean():.4f}, negative {neg.mean():.4f}")
    for reason, count in rules.skipped.items():
        if reason != "positives":
            print(f"Skipped {count:,} potential negatives due to {reason}.")
    missing = int((~torch.isfinite(neg_scores)).sum())
    if missing:
        print(
            f"Could not find {missing:,} of {neg_scores.numel():,} negatives; consider a larger range_max "
            "or looser range_min/margins/max_score."
        )
