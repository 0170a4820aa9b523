"""Run raystx's real per-worker loop (``train_worker``) on N gloo processes without Ray, for the FSDP tests.

``run_loop(world_size, spec)`` spawns ``world_size`` processes (``tests/losses/dist_harness.run_distributed``),
each builds the model, losses and staged datasets described by ``spec`` and runs ``train_worker`` with a
``SpawnRuntime``: rank and world size from the process group, checkpoints merged into
``{spec["out"]}/checkpoint-{step}`` (every rank copies its share, as Ray's storage does), a barrier per report.
Each process returns ``{"losses": [logged loss per step], "weights": {name: full tensor}}`` (rank 0's entry).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))

from dist_harness import run_distributed  # noqa: E402

from raystx.train.runtime import Runtime  # noqa: E402


class SpawnRuntime(Runtime):
    """One rank of a gloo process group; checkpoints merged under ``output_dir`` like Ray's storage does."""

    def __init__(self, output_dir: Path, resume: Path | None = None) -> None:
        self.rank = dist.get_rank()
        self.local_rank = self.rank
        self.world_size = dist.get_world_size()
        self.device = torch.device("cpu")
        self.output_dir = Path(output_dir)
        self.reports: list[dict[str, Any]] = []
        self._latest = resume

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            target = self.output_dir / (checkpoint_name or "checkpoint")
            shutil.copytree(checkpoint_dir, target, dirs_exist_ok=True)
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        dist.barrier()
        if checkpoint_dir is not None:
            self._latest = target

    def latest_checkpoint(self):
        return self._latest


def build_model(model_dir: str, pooling: str = "mean", packed: bool | None = None):
    """Transformer + Pooling over ``model_dir``; ``packed`` False forces the padded forward (None: default)."""
    from raystx.models import Pooling, SentenceTransformer, Transformer

    torch.manual_seed(0)
    word = Transformer(model_dir)
    if packed is not None:
        word.packed = packed
    return SentenceTransformer(modules=[word, Pooling(word.get_word_embedding_dimension(), pooling)])


def add_lora(model, fields: dict[str, Any]) -> None:
    """Add a LoRA adapter built from ``fields`` (``peft.LoraConfig`` keyword arguments) to ``model``."""
    import peft

    torch.manual_seed(1)  # the adapter's random init is the same on every rank and in every run
    model.add_adapter(peft.LoraConfig(**fields))


def build_losses(kind: str, model) -> dict[str, Any]:
    from raystx import losses as L

    if kind == "mnrl":
        return {"train": L.MultipleNegativesRankingLoss(model, gather_across_devices=True)}
    if kind == "cached":
        return {
            "train": L.CachedMultipleNegativesRankingLoss(
                model, mini_batch_size=3, gather_across_devices=True
            )
        }
    if kind == "cosent":
        return {"train": L.CoSENTLoss(model)}
    if kind == "matryoshka":
        inner = L.MultipleNegativesRankingLoss(model, gather_across_devices=True)
        return {"train": L.MatryoshkaLoss(model, inner, [32, 16, 8])}
    if kind == "multi":
        return {
            "pairs": L.MultipleNegativesRankingLoss(model, gather_across_devices=True),
            "scored": L.CoSENTLoss(model),
        }
    if kind == "softmax":
        return {"train": L.SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=3)}
    if kind == "nan":
        return {"train": NanOnRankOne(model, gather_across_devices=True)}
    raise ValueError(kind)


class _NanMixin:
    nan_call = 3

    def forward(self, features, labels):
        self.calls = getattr(self, "calls", 0) + 1
        loss = super().forward(features, labels)
        if dist.get_rank() == dist.get_world_size() - 1 and self.calls == self.nan_call:
            loss = loss * float("nan")  # after the gather: only this rank's loss is not finite
        return loss


def _nan_loss_class():
    from raystx.losses import MultipleNegativesRankingLoss

    return type("NanOnRankOne", (_NanMixin, MultipleNegativesRankingLoss), {})


def NanOnRankOne(model, **kwargs):  # noqa: N802 - a loss factory named like the class it makes
    """MNRL whose loss is NaN on the last rank in its third call (the other ranks' losses stay finite)."""
    return _nan_loss_class()(model, **kwargs)


class EncodeEvaluator:
    """An evaluator that encodes a few sentences (every rank must take part in the sharded forwards)."""

    def __call__(self, model) -> dict[str, float]:
        from raystx.testing import make_sentences

        embeddings = model.encode(make_sentences(5, seed=3), convert_to_tensor=True)
        return {"norm": float(embeddings.norm())}


def datasets_for(kind: str, rows: int = 48):
    import datasets

    from raystx.testing import make_sentences

    a, b = make_sentences(rows, seed=1), make_sentences(rows, seed=2)
    scores = [((i * 37) % 11) / 10.0 for i in range(rows)]
    pairs = datasets.Dataset.from_dict({"anchor": a, "positive": b})
    scored = datasets.Dataset.from_dict({"sentence1": a, "sentence2": b, "score": scores})
    if kind in ("mnrl", "cached", "matryoshka", "nan"):
        return pairs
    if kind == "cosent":
        return scored
    if kind == "softmax":
        return datasets.Dataset.from_dict({"s1": a, "s2": b, "label": [i % 3 for i in range(rows)]})
    return {"pairs": pairs, "scored": scored}


def train_rank(rank: int, world_size: int, spec: dict[str, Any]) -> dict[str, Any]:
    """One rank: build everything from ``spec`` and run the loop; rank 0 returns losses and full weights."""
    from raystx.data.sources import prepare_sources, validate_sources
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.worker import WorkerPayload, train_worker

    model = build_model(spec["model_dir"], spec.get("pooling", "mean"), spec.get("packed"))
    if spec.get("lora"):
        add_lora(model, spec["lora"])
    losses = build_losses(spec["loss"], model)
    out = Path(spec["out"])
    sources = prepare_sources(
        datasets_for(spec["loss"]), staging_dir=str(out / f".stage-{rank}"), name="train"
    )
    args = SentenceTransformerTrainingArguments(output_dir=str(out), **spec["args"])
    matched = validate_sources(
        sources, losses, global_batch_size=args.per_device_train_batch_size * world_size, drop_last=True
    )
    initial_weights = None
    if spec.get("meta_load"):  # ship a meta copy; rank 0 reads the weights from the model directory
        from raystx.train.fsdp_meta_load import meta_payload

        model, losses = meta_payload(model, losses)
        initial_weights = spec["model_dir"]
    payload = WorkerPayload(
        model=model,
        initial_weights=initial_weights,
        losses=losses,
        args=args,
        sources=sources,
        label_kinds={n: matched[n].label for n in sources},
        resume_from=spec.get("resume_from"),
        run_dir=str(out),
        evaluator=EncodeEvaluator() if spec.get("evaluator") else None,
    )
    runtime = SpawnRuntime(out)
    if spec.get("crash_after_step"):
        _crash_after(spec["crash_after_step"])
    try:
        result = train_worker(payload, runtime)
    except SimulatedCrash:
        return {"crashed": True}
    weights = _full_weights(model)
    history = [h["loss"] for h in result["log_history"] if "loss" in h]
    evals = [h["eval_norm"] for h in result["log_history"] if "eval_norm" in h]
    features = dict(model.tokenize(["a b c", "a"]))
    used_packed = bool(model[0]._use_packed(features)) if hasattr(model[0], "_use_packed") else False
    return {
        "losses": history,
        "weights": weights,
        "global_step": result["global_step"],
        "evals": evals,
        "packed": used_packed,
    }


def _full_weights(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        full = p.full_tensor() if isinstance(p, DTensor) else p
        out[name] = full.detach().clone().cpu()
    return out


class SimulatedCrash(Exception):
    """Raised by every rank after a chosen step (its checkpoint written): an interrupted run."""


def _crash_after(step: int) -> None:
    """Raise after the checkpoint of ``step`` was written (an interrupted run)."""
    from raystx.train import loop

    original = loop.TrainLoop.after_step

    def after_step(self, *a, **k):
        result = original(self, *a, **k)
        if self.state.global_step >= step:
            raise SimulatedCrash(f"after step {self.state.global_step}")
        return result

    loop.TrainLoop.after_step = after_step


def run_loop(world_size: int, spec: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Rank 0's result of ``train_rank`` over ``world_size`` processes."""
    return run_distributed(train_rank, world_size=world_size, args=(spec,), timeout=timeout)[0]
