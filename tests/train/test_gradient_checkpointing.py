"""Activation (gradient) checkpointing per transformer block gives the same loss and gradients as without it, for
BERT (packed) and a decoder (packed), with MNRL and with GradCache (CachedMultipleNegativesRankingLoss), dropout on;
and the ``gradient_checkpointing`` training argument trains to the same weights."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss
from raystx.models import Pooling, SentenceTransformer, Transformer
from raystx.testing_decoder import QUERY_PROMPT, build_tiny_decoder
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return build_tiny_decoder(tmp_path_factory.mktemp("qwen3"), "qwen3")


def _model(kind: str, tiny_bert_dir, qwen3_dir) -> SentenceTransformer:
    """A model with dropout on (so the checkpoint's and GradCache's RNG replay are exercised)."""
    if kind == "bert":
        transformer = Transformer(
            str(tiny_bert_dir),
            config_kwargs={"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
        )
        pooling = Pooling(32, "mean")
    else:
        transformer = Transformer(str(qwen3_dir), config_kwargs={"attention_dropout": 0.1})
        pooling = Pooling(32, "lasttoken")
    return SentenceTransformer(modules=[transformer, pooling]).train()


def loss_and_grads(model, loss, features) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss value, {parameter name: gradient}) after ``loss(features).backward()``."""
    model.zero_grad(set_to_none=True)
    value = loss([dict(f) for f in features], None)
    value.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return value.detach(), grads


def _count_checkpointed_layers(model: SentenceTransformer) -> list[int]:
    """Wrap every layer's checkpoint function to count its calls."""
    calls: list[int] = []
    for module in model[0].auto_model.modules():
        func = getattr(module, "_gradient_checkpointing_func", None)
        if func is not None and getattr(module, "gradient_checkpointing", False):
            module._gradient_checkpointing_func = lambda *a, _f=func, **k: calls.append(1) or _f(*a, **k)
    return calls


@pytest.mark.parametrize("loss_name", ["mnrl", "cached_mnrl"])
@pytest.mark.parametrize("kind", ["bert", "qwen3"])
def test_checkpointing_gives_the_same_loss_and_gradients(tiny_bert_dir, qwen3_dir, kind, loss_name):
    model = _model(kind, tiny_bert_dir, qwen3_dir)
    prompt = QUERY_PROMPT if kind == "qwen3" else None
    features = [
        model.tokenize(make_sentences(10, seed=1), prompt=prompt),
        model.tokenize(make_sentences(10, seed=2, min_len=1, max_len=14)),
    ]
    assert model[0]._use_packed(dict(features[0]))

    def make_loss(m):
        if loss_name == "mnrl":
            return MultipleNegativesRankingLoss(m)
        return CachedMultipleNegativesRankingLoss(m, mini_batch_size=3)

    torch.manual_seed(0)
    plain = loss_and_grads(model, make_loss(model), features)
    model.gradient_checkpointing_enable()
    calls = _count_checkpointed_layers(model)
    assert model[0]._use_packed(dict(features[0]))  # checkpointing keeps the padding-free forward
    torch.manual_seed(0)
    ckpt = loss_and_grads(model, make_loss(model), features)

    layers = model[0].auto_model.config.num_hidden_layers
    with_grad = 2 if loss_name == "mnrl" else 2 * 4  # GradCache re-forwards 2 columns x 4 mini-batches
    # every block ran under the checkpoint function in every forward with gradients; transformers' decoder layers
    # also route GradCache's no-grad first pass through it (where it just runs the layer)
    expected = {layers * with_grad} if loss_name == "mnrl" else {layers * with_grad, 2 * layers * with_grad}
    assert len(calls) in expected
    torch.testing.assert_close(ckpt[0], plain[0], atol=1e-6, rtol=1e-6)
    assert plain[1].keys() == ckpt[1].keys() and plain[1]
    for name, grad in plain[1].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(ckpt[1][name], grad, atol=1e-6 * float(grad.abs().max()), rtol=1e-6)


def test_gradient_checkpointing_training_argument_trains_to_the_same_weights(qwen3_dir, tmp_path):
    data = datasets.Dataset.from_dict({"anchor": make_sentences(12, 1), "positive": make_sentences(12, 2)})
    base = _model("qwen3", None, qwen3_dir)
    results = {}
    for flag in (False, True):
        model = copy.deepcopy(base)
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / f"run-{flag}"),
            max_steps=2,
            per_device_train_batch_size=6,
            learning_rate=1e-3,
            save_strategy="no",
            logging_steps=1,
            seed=5,
            gradient_checkpointing=flag,
            prompts={"anchor": QUERY_PROMPT},
        )
        payload = WorkerPayload(
            model=model,
            losses={"train": loss},
            args=args,
            sources=prepare_sources(data, staging_dir=str(tmp_path / f"stage-{flag}")),
            label_kinds={"train": loss.contract.label},
        )
        runtime = LocalRuntime(tmp_path / f"run-{flag}", device="cpu")
        train_worker(payload, runtime)
        assert model[0].auto_model.is_activation_checkpointing == flag
        results[flag] = (model, [r["loss"] for r in runtime.reports if "loss" in r])
    (plain, plain_losses), (ckpt, ckpt_losses) = results[False], results[True]
    assert len(plain_losses) == 2
    assert ckpt_losses == pytest.approx(plain_losses, abs=1e-6)
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(plain.parameters(), base.parameters()))
    assert moved > 1e-4
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
