"""Loss parameters reachable under several names are checkpointed once and restored to every alias.

safetensors refuses to save tensors that share memory. A loss's own parameters (everything but the model) go to
``loss_modules.safetensors``, and they can be shared: TSDAE's decoder ties its output bias, one guide model can
serve two GIST losses, one SoftmaxLoss can serve several datasets. Each of these used to fail the first
checkpoint of a run (so the run itself, since the final checkpoint is always written).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_tiny_bert
from torch import nn

from raystx.losses import CachedGISTEmbedLoss, DenoisingAutoEncoderLoss, GISTEmbedLoss, SoftmaxLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.checkpoint import loss_modules_state, restore_checkpoint, write_checkpoint
from raystx.train.optim import build_optimizer, build_scheduler, unique_parameters
from raystx.train.state import CheckpointState


def _checkpoint_roundtrip(
    tmp_path: Path, model: SentenceTransformer, losses: dict[str, nn.Module]
) -> dict[str, nn.Module]:
    """Write a checkpoint of ``losses``, perturb every loss parameter, restore; return the losses."""
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path))
    optimizer = build_optimizer(unique_parameters([model, *losses.values()]), args)
    scheduler = build_scheduler(optimizer, args, 10)
    write_checkpoint(
        tmp_path / "ckpt",
        rank=0,
        model=model,
        losses=losses,
        optimizer=optimizer,
        scheduler=scheduler,
        trainer_state=CheckpointState(global_step=1, epoch=0, step_in_epoch=1),
    )
    with torch.no_grad():
        for loss in losses.values():
            for param in loss.parameters():
                param.add_(1.0)
    restore_checkpoint(
        tmp_path / "ckpt", rank=0, model=model, losses=losses, optimizer=optimizer, scheduler=scheduler
    )
    return losses


def _snapshot(losses: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{ds}.{k}": v.detach().clone() for ds, loss in losses.items() for k, v in loss.state_dict().items()
    }


def _assert_same(before: dict[str, torch.Tensor], losses: dict[str, nn.Module]) -> None:
    after = _snapshot(losses)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)


def test_one_softmax_loss_for_two_datasets(tmp_path, tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    loss = SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=3)
    losses = {"nli": loss, "more_nli": loss}  # what a single loss for a DatasetDict becomes
    state = loss_modules_state(losses, model)
    assert sorted(state) == ["nli.classifier.bias", "nli.classifier.weight"]
    before = _snapshot(losses)
    _assert_same(before, _checkpoint_roundtrip(tmp_path, model, losses))


def test_tsdae_decoder_with_tied_bias(tmp_path, tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    predictions = loss.decoder.cls.predictions
    assert predictions.bias is predictions.decoder.bias  # the tie that safetensors refused
    before = _snapshot({"tsdae": loss})
    restored = _checkpoint_roundtrip(tmp_path, model, {"tsdae": loss})
    _assert_same(before, restored)
    assert predictions.bias is predictions.decoder.bias


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("guide"), seed=1)


def test_one_guide_shared_by_two_gist_losses(tmp_path, tiny_bert_dir, guide_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    guide = SentenceTransformer(str(guide_dir))
    losses = {"gist": GISTEmbedLoss(model, guide), "cached_gist": CachedGISTEmbedLoss(model, guide)}
    state = loss_modules_state(losses, model)
    assert state and all(key.startswith("gist.guide.") for key in state)
    before = _snapshot(losses)
    restored = _checkpoint_roundtrip(tmp_path, model, losses)
    _assert_same(before, restored)
    assert restored["gist"].guide is restored["cached_gist"].guide
