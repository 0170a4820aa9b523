"""Long-lived model replicas on Ray: the actors behind ``start_multi_process_pool``, ``encode(pool=...)`` and
``mine_hard_negatives``.

A ``ReplicaPool`` starts ``num_workers`` ``ModelReplica`` actors once; each loads the model once (from one
object-store snapshot) and runs on its CPU share (torch threads, OpenMP and the tokenizers' thread pool all set
to ``cpus_per_worker``). Work goes out in chunks of texts: the driver sorts the texts by length (as
``encode`` does, so a chunk pads little), keeps two chunks queued per replica and hands the next chunk to
whichever replica finishes first, so replicas never wait on each other until the last chunk. A replica either
returns a chunk's embeddings (``encode``) or keeps them as part of a corpus shard (``encode_keep``), which it
then searches (``raystx.infer.search.CorpusShard``): mining moves no corpus embedding through the driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from raystx.infer.pool import InferencePool

IN_FLIGHT = 2  # chunks queued per replica: one running, one waiting, so a replica never idles between chunks
CHUNKS_PER_REPLICA = 32  # aim for this many chunks per replica (small enough to balance the tail)


def thread_env(threads: int) -> dict[str, str]:
    """Environment of a replica process that keeps every thread pool within its ``threads`` CPUs."""
    env = {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "RAYON_NUM_THREADS": str(threads),
    }
    if threads == 1:
        env["TOKENIZERS_PARALLELISM"] = "false"
    return env


class ModelReplica:
    """One model copy in a Ray actor: encodes chunks of texts and may hold corpus shards to search.

    ``model_ref`` is ``[ray.put(model)]`` (a list, so Ray passes the reference and the replica fetches it);
    ``threads`` torch intra-op threads; ``device`` ``"cpu"`` or ``"cuda"`` (the actor's GPU).
    """

    def __init__(self, model_ref: list[Any], threads: int, device: str) -> None:
        import ray
        import torch

        started = time.perf_counter()
        torch.set_num_threads(threads)
        self.model = ray.get(model_ref[0]).to(device)
        self.model.eval()
        self.load_s = time.perf_counter() - started
        self.kept: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.shards: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        """What this replica runs with: ``threads`` (torch), ``pid``, ``load_s`` (model fetch + load seconds),
        ``cpu_s`` (CPU seconds this process has used so far: with wall time, the CPU share it got)."""
        import os

        import torch

        return {
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
            "load_s": self.load_s,
            "cpu_s": time.process_time(),
        }

    def encode(self, texts: list[str], role: str, prompt: str | None, kwargs: dict[str, Any]) -> np.ndarray:
        """(len(texts), dim) float32 embeddings; ``role`` picks ``encode_query``/``encode_document``/``encode``."""
        encoder = {
            "query": self.model.encode_query,
            "document": self.model.encode_document,
            "plain": self.model.encode,
        }[role]
        emb = encoder(texts, prompt=prompt, convert_to_numpy=True, show_progress_bar=False, **kwargs)
        return np.asarray(emb, dtype=np.float32)

    def encode_keep(
        self,
        key: str,
        ids: np.ndarray,
        texts: list[str],
        role: str,
        prompt: str | None,
        kwargs: dict[str, Any],
    ) -> int:
        """Encode ``texts`` (corpus ``ids``) and keep them for the shard ``key``; returns the row count."""
        self.kept.setdefault(key, []).append((ids, self.encode(texts, role, prompt, kwargs)))
        return len(ids)

    def build_shard(self, key: str, similarity: str, use_faiss: bool) -> int:
        """Turn what ``encode_keep`` kept under ``key`` into a searchable shard; returns its row count."""
        import torch

        from raystx.infer.search import CorpusShard

        shard = CorpusShard(similarity, torch.get_num_threads(), use_faiss)
        parts = self.kept.pop(key, [])
        if parts:
            shard.load_arrays(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        self.shards[key] = shard
        return len(shard.ids)

    def search(
        self, key: str, queries: np.ndarray, k: int, pair_rows: np.ndarray, pair_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``CorpusShard.search`` on the shard ``key``."""
        return self.shards[key].search(queries, k, pair_rows, pair_ids)

    def drop(self, key: str) -> None:
        """Forget the shard ``key`` (and anything kept for it)."""
        self.kept.pop(key, None)
        self.shards.pop(key, None)


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Positions of ``texts``, longest first (ties in input order): the order ``encode`` batches in."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def chunk_rows(total: int, batch_size: int, replicas: int, most: int) -> int:
    """Texts per chunk: about ``CHUNKS_PER_REPLICA`` chunks per replica (so the last chunks, which may leave a
    replica idle, are short), a multiple of ``batch_size``, at least one batch and at most ``most``."""
    rows = -(-total // (CHUNKS_PER_REPLICA * replicas))
    rows = -(-rows // batch_size) * batch_size
    return max(batch_size, min(most, rows))


class ReplicaPool:
    """``scaling.num_workers`` ``ModelReplica`` actors started now (they load the model while the caller goes on).

    ``wait_ready()`` blocks until all have loaded and returns their ``info()``; ``close()`` ends them.
    """

    def __init__(self, model: Any, scaling: InferencePool) -> None:
        import ray

        from raystx.ray_init import ensure_ray

        ensure_ray()
        self.scaling = scaling
        self.started = time.perf_counter()
        self.ready_s: float | None = None
        model_ref = ray.put(model)
        actor = ray.remote(ModelReplica).options(
            num_cpus=scaling.cpus_per_worker,
            num_gpus=1 if scaling.use_gpu else 0,
            runtime_env={"env_vars": thread_env(scaling.cpus_per_worker)},
        )
        self.actors = [
            actor.remote([model_ref], scaling.cpus_per_worker, scaling.device)
            for _ in range(scaling.num_workers)
        ]
        self._model_ref: Any = model_ref  # kept until the replicas have it
        self._keys = 0

    @property
    def num_workers(self) -> int:
        return len(self.actors)

    def wait_ready(self) -> list[dict[str, Any]]:
        """Block until every replica has its model; their ``info()`` (threads, pid, load seconds)."""
        import ray

        infos = ray.get([a.info.remote() for a in self.actors])
        if self.ready_s is None:
            self.ready_s = time.perf_counter() - self.started
        self._model_ref = None
        return infos

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self._model_ref = None

    def new_key(self) -> str:
        self._keys += 1
        return f"shard-{self._keys}"

    def chunk_rows(self, total: int, batch_size: int, chunk_size: int | None = None) -> int:
        """Texts per chunk for this pool (``chunk_size`` if given): see ``chunk_rows``."""
        if chunk_size is not None:
            return chunk_size
        return chunk_rows(total, batch_size, self.num_workers, self.scaling.rows_per_block)

    def dispatch(self, method: str, calls: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, int, Any]]:
        """Run ``actor.method(*args)`` for each ``args`` of ``calls`` on whichever replica is free, at most
        ``IN_FLIGHT`` queued per replica; yields ``(call index, replica index, result)`` as calls finish."""
        import ray

        calls = enumerate(calls)
        pending: dict[Any, tuple[int, int]] = {}

        def submit(replica: int) -> None:
            nxt = next(calls, None)
            if nxt is not None:
                ref = getattr(self.actors[replica], method).remote(*nxt[1])
                pending[ref] = (nxt[0], replica)

        for _ in range(IN_FLIGHT):
            for replica in range(self.num_workers):
                submit(replica)
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            index, replica = pending.pop(done)
            result = ray.get(done)
            submit(replica)
            yield index, replica, result

    def encode(
        self,
        texts: Sequence[str],
        role: str = "plain",
        prompt: str | None = None,
        kwargs: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        progress: str | None = None,
    ) -> np.ndarray:
        """(len(texts), dim) float32 embeddings in input order (``kwargs`` go to every encode call:
        ``batch_size``, ``normalize_embeddings``, ``prompt_name``, ``truncate_dim``, ``task``); a tqdm bar
        named ``progress`` when given."""
        kwargs = dict(kwargs or {})
        order = length_order(texts)
        rows = self.chunk_rows(len(texts), kwargs.get("batch_size", 32), chunk_size)
        starts = range(0, len(texts), rows)
        calls = (([str(texts[i]) for i in order[s : s + rows]], role, prompt, kwargs) for s in starts)
        out: np.ndarray | None = None
        with _progress(progress, len(texts)) as bar:
            for index, _, emb in self.dispatch("encode", calls):
                if out is None:
                    out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                out[order[starts[index] : starts[index] + rows]] = emb
                bar.update(len(emb))
        return out if out is not None else np.empty((0, 0), dtype=np.float32)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress(desc: str | None, total: int) -> Any:
    if desc is None:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")


class ReplicaSearch:
    """A corpus sharded over a ``ReplicaPool``'s replicas: each keeps the embeddings of the chunks it encoded.

    ``load(texts, ...)`` encodes the corpus (ids = positions in ``texts``) and builds the shards; ``search``
    sends a block of query embeddings to every replica and merges their top-k; ``close`` drops the shards
    (the replicas stay for the pool's next call).
    """

    def __init__(self, pool: ReplicaPool, similarity: str, use_faiss: bool) -> None:
        self.pool = pool
        self.similarity = similarity
        self.use_faiss = use_faiss
        self.key = pool.new_key()
        self.sizes: list[int] = []

    def load(
        self,
        texts: Sequence[str],
        role: str,
        prompt: str | None,
        kwargs: dict[str, Any],
        progress: str | None = None,
    ) -> None:
        import ray

        order = length_order(texts)
        rows = self.pool.chunk_rows(len(texts), kwargs.get("batch_size", 32))
        calls = (
            (
                self.key,
                order[s : s + rows],
                [str(texts[i]) for i in order[s : s + rows]],
                role,
                prompt,
                kwargs,
            )
            for s in range(0, len(texts), rows)
        )
        with _progress(progress, len(texts)) as bar:
            for _, _, n in self.pool.dispatch("encode_keep", calls):
                bar.update(n)
        self.sizes = ray.get(
            [a.build_shard.remote(self.key, self.similarity, self.use_faiss) for a in self.pool.actors]
        )
        if sum(self.sizes) != len(texts):
            raise RuntimeError(
                f"the replicas hold {sum(self.sizes)} corpus embeddings for {len(texts)} texts"
            )

    def search(
        self, queries: np.ndarray, k: int, pair_rows: np.ndarray, pair_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global top ``k`` (scores, ids) of each query row, and the score of every (row, corpus id) pair."""
        import ray

        from raystx.infer.search import merge_parts

        block = ray.put(np.ascontiguousarray(queries, dtype=np.float32))
        parts = ray.get([a.search.remote(self.key, block, k, pair_rows, pair_ids) for a in self.pool.actors])
        return merge_parts(parts, k, len(pair_ids))

    def close(self) -> None:
        import ray

        if self.pool.actors:
            ray.get([a.drop.remote(self.key) for a in self.pool.actors])
