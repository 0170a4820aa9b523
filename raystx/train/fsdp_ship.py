"""What the driver ships to FSDP workers: the full model, or a weightless copy plus the directory to read.

What goes in: the trainer's model and losses and the training arguments. What comes out (``ship_model``): a
``Shipment``, the model and losses the ``WorkerPayload`` carries and, when the workers are to load the weights
themselves, ``initial_weights`` (a saved model directory) with the loader's keyword arguments.

With ``fsdp`` on, a model whose weights are provably those of a saved directory that every node of the cluster can
read is shipped as a meta-device copy (``raystx.train.fsdp_meta_load.meta_payload``: no parameter memory; buffers,
tokenizer, configs and the losses' own heads real). Each worker shards it and ``load_sharded`` fills its shards,
rank 0 alone reading the directory: the payload no longer pickles the full weights through the object store, and
no worker holds them all. Otherwise (FSDP off; a model built from modules, copied, or changed after loading; a
directory changed on disk; a node that cannot read it) the full model is shipped as before, and a DEBUG line says
why. The checks (``raystx.models.weights_origin``) read no tensor. A driver model built without weights
(``raystx train`` with fsdp: ``raystx.models.transformer.empty_weights``) that has to be shipped in full after all
reads them from its directory first (``materialize``).

"Every node can read it": on a one-node cluster whose node is the driver's, the driver's own check suffices;
otherwise a zero-CPU task on each alive node lists the directory and must find the same files (size and
modification time) as the driver: shared storage passes, a node-local path does not. Nodes that join later
(autoscaling, a restart on a new node) are not probed; a rank 0 there that cannot read the directory fails with
the loader's error naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from raystx.models.weights_origin import Listing, directory_listing, origin_of
from raystx.train.fsdp_options import fsdp_enabled

logger = logging.getLogger("raystx.train")

PROBE_TIMEOUT_S = 60.0


@dataclass
class Shipment:
    """The model and losses to put in the payload, and where the workers read the weights (None: shipped)."""

    model: nn.Module
    losses: dict[str, nn.Module]
    initial_weights: str | None = None
    loader_kwargs: dict[str, Any] = field(default_factory=dict)


def ship_model(model: nn.Module, losses: dict[str, nn.Module], args: Any) -> Shipment:
    """A weightless model plus its directory when the FSDP workers can load the weights themselves, else the
    model itself (see the module docstring)."""
    reason = full_model_reason(model, args)
    if reason is not None:
        if fsdp_enabled(getattr(args, "fsdp", None)):
            logger.debug("FSDP: shipping the full model to the workers: %s", reason)
        materialize(model)
        return Shipment(model, losses)
    from raystx.train.fsdp_meta_load import meta_payload

    origin = origin_of(model)
    assert origin is not None  # full_model_reason checked it
    meta_model, meta_losses = meta_payload(model, losses)
    logger.debug("FSDP: the workers load the weights from %s (the payload carries none)", origin.directory)
    return Shipment(meta_model, meta_losses, origin.directory, dict(origin.loader_kwargs))


def materialize(model: nn.Module) -> None:
    """Give a model built without weights (``empty_weights()``) its weights, read from the directory it was
    built from, when it has to be shipped in full after all (no-op for a model without meta parameters)."""
    if not any(p.is_meta for p in model.parameters()):
        return
    origin = origin_of(model)
    if origin is None:
        raise ValueError(
            "the model has parameters on the meta device and no directory to read its weights from; load it "
            "with SentenceTransformer(path) (or build it outside empty_weights())"
        )
    from raystx.train.checkpoint import load_model_weights

    logger.debug("FSDP: reading the model's weights on the driver from %s", origin.directory)
    load_model_weights(model, origin.directory)


def full_model_reason(model: nn.Module, args: Any) -> str | None:
    """Why the full model must be shipped, or None when the workers may read its directory instead."""
    if not fsdp_enabled(getattr(args, "fsdp", None)):
        return "fsdp is off"
    origin = origin_of(model)
    if origin is None:
        return "the model was not loaded from a saved directory (built from modules, or a copy)"
    reason = origin.unchanged_reason(model)
    if reason is not None:
        return reason
    return unreadable_reason(origin.directory, origin.listing)


def unreadable_reason(directory: str, listing: Listing, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when every alive node of the Ray cluster sees ``directory`` with the files of ``listing``; else why
    not. Needs a connected Ray driver."""
    import ray

    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - a client-mode driver has no node of its own
        here = None
    if nodes == [here]:
        return None  # the driver checked the directory itself (WeightsOrigin.unchanged_reason)
    return probe_nodes(directory, listing, nodes, timeout_s)


def probe_nodes(directory: str, listing: Listing, nodes: list[str], timeout_s: float) -> str | None:
    """List ``directory`` on each of ``nodes`` (a zero-CPU task pinned to the node); None when all match."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(_listing_or_none)
    refs = {
        node: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            directory
        )
        for node in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    for node, ref in refs.items():
        if ref not in ready:
            ray.cancel(ref, force=True)
            return f"node {node[:12]} did not answer whether it can read {directory} within {timeout_s:.0f} s"
        try:
            seen = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not rely on that node
            return f"node {node[:12]} could not list {directory}: {exc}"
        if seen != listing:
            what = "has no such directory" if seen is None else "sees other files there"
            return f"node {node[:12]} {what} ({directory}): not shared storage"
    return None


def _listing_or_none(directory: str) -> Listing | None:
    """``directory_listing(directory)`` on the node this runs on; None when it is not a directory there."""
    from pathlib import Path

    return directory_listing(directory) if Path(directory).is_dir() else None
