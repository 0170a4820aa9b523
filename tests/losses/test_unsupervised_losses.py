"""Unsupervised losses: TSDAE (DenoisingAutoEncoderLoss + its word-deletion noise) and Contrastive Tension,
run forward/backward on the tiny BERT (dropout off) next to sentence-transformers with the same seeds."""

from __future__ import annotations

import random
import re

import pytest
import torch
from conftest import make_sentences
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses import (
    ContrastiveTensionLoss,
    ContrastiveTensionLossInBatchNegatives,
    DenoisingAutoEncoderLoss,
)
from raystx.losses.contrastive_tension import identical_rows
from raystx.losses.denoising_auto_encoder import delete_words, find_transformer, make_denoising_pairs
from raystx.models import SentenceTransformer
from raystx.util import dot_score

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _assert_grads_equal(
    ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], min_count: int = 10
) -> None:
    assert ours.keys() == ref.keys() and len(ours) >= min_count
    for name in ours:
        torch.testing.assert_close(ours[name], ref[name], **TOL, msg=name)


def _models(tiny_bert_dir):
    return SentenceTransformer(str(tiny_bert_dir)), STModel(str(tiny_bert_dir))


def test_delete_words_removes_sixty_percent_and_keeps_order() -> None:
    rng = random.Random(0)
    sentences = make_sentences(600, seed=3, min_len=6, max_len=14)
    kept = total = 0
    for sentence in sentences:
        words = sentence.split()
        damaged = delete_words(sentence, rng=rng).split()
        assert 1 <= len(damaged) <= len(words)
        it = iter(words)
        assert all(w in it for w in damaged)  # an ordered subsequence of the original words
        kept += len(damaged)
        total += len(words)
    assert abs(kept / total - 0.4) < 0.03  # each token survives with probability 1 - 0.6


def test_delete_words_edge_cases_and_pairs() -> None:
    assert delete_words("the cat sits, happy.", del_ratio=0.0) == "the cat sits, happy."
    assert delete_words("", del_ratio=0.9) == ""
    only = delete_words("one two three", del_ratio=1.0, rng=random.Random(1))
    assert only in {"one", "two", "three"}
    pairs = make_denoising_pairs(["a b c d", "e f g h"], seed=5)
    assert pairs == make_denoising_pairs(["a b c d", "e f g h"], seed=5)
    assert pairs["original"] == ["a b c d", "e f g h"]
    assert all(re.fullmatch(r"[a-h]( [a-h])*", s) for s in pairs["damaged"])


def test_tsdae_matches_sentence_transformers(tiny_bert_dir) -> None:
    model, st_model = _models(tiny_bert_dir)
    torch.manual_seed(123)
    ours = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    torch.manual_seed(123)
    ref = st_losses.DenoisingAutoEncoderLoss(st_model, tie_encoder_decoder=True)
    ours_state, ref_state = ours.decoder.state_dict(), ref.decoder.state_dict()
    assert ours_state.keys() == ref_state.keys()
    for key in ours_state:  # same seed, same checkpoint: identical decoders (incl. random cross-attention)
        torch.testing.assert_close(ours_state[key], ref_state[key], rtol=0, atol=0)

    encoder, decoder_base = find_transformer(model), ours.decoder.bert
    assert encoder.embeddings.word_embeddings.weight is decoder_base.embeddings.word_embeddings.weight
    assert (
        encoder.encoder.layer[0].attention.self.query.weight
        is decoder_base.encoder.layer[0].attention.self.query.weight
    )
    assert ours.trainable_modules() == [ours.decoder]

    pairs = make_denoising_pairs(make_sentences(6, seed=9), seed=0)
    values, grads = [], []
    for loss, tokenize in ((ours, model.tokenize), (ref, st_model.preprocess)):
        loss.zero_grad()
        value = loss([tokenize(pairs["damaged"]), tokenize(pairs["original"])], None)
        value.backward()
        values.append(value.detach())
        grads.append(_grads(loss.decoder))
    torch.testing.assert_close(values[0], values[1], **TOL)
    assert values[0] > 0
    _assert_grads_equal(grads[0], grads[1], min_count=30)
    assert any("crossattention" in name for name in grads[0])
    assert ours.get_config_dict()["decoder_name_or_path"] == str(tiny_bert_dir)


def test_tsdae_untied_needs_decoder_path(tiny_bert_dir) -> None:
    model, _ = _models(tiny_bert_dir)
    with pytest.raises(ValueError, match="decoder_name_or_path"):
        DenoisingAutoEncoderLoss(model, tie_encoder_decoder=False)
    loss = DenoisingAutoEncoderLoss(model, decoder_name_or_path=str(tiny_bert_dir), tie_encoder_decoder=False)
    encoder = find_transformer(model)
    assert (
        encoder.embeddings.word_embeddings.weight is not loss.decoder.bert.embeddings.word_embeddings.weight
    )
    assert not loss.need_retokenization


def test_contrastive_tension_matches_sentence_transformers(tiny_bert_dir) -> None:
    model, st_model = _models(tiny_bert_dir)
    ours, ref = ContrastiveTensionLoss(model), st_losses.ContrastiveTensionLoss(st_model)
    assert ours.model2 is model and ours.model1 is not model
    assert ours.trainable_modules() == [ours.model1]
    first = make_sentences(8, seed=1)
    others = make_sentences(8, seed=2)
    second = [first[i] if i % 3 == 0 else others[i] for i in range(8)]
    features = model.tokenize(first), model.tokenize(second)
    torch.testing.assert_close(identical_rows(*features), torch.tensor([1.0, 0, 0, 1, 0, 0, 1, 0]))
    results = []
    for loss, tokenize in ((ours, model.tokenize), (ref, st_model.preprocess)):
        loss.zero_grad()
        value = loss([tokenize(first), tokenize(second)], None)
        value.backward()
        results.append(
            (value.detach(), _grads(find_transformer(loss.model1)), _grads(find_transformer(loss.model2)))
        )
    torch.testing.assert_close(results[0][0], results[1][0], **TOL)
    _assert_grads_equal(results[0][1], results[1][1])
    _assert_grads_equal(results[0][2], results[1][2])


@pytest.mark.parametrize(("scale", "similarity"), [(20.0, None), (1.0, "dot")])
def test_contrastive_tension_in_batch_negatives_matches_sentence_transformers(
    tiny_bert_dir, scale, similarity
):
    from sentence_transformers.util import dot_score as st_dot_score

    model, st_model = _models(tiny_bert_dir)
    kwargs, st_kwargs = {}, {}
    if similarity == "dot":
        kwargs, st_kwargs = {"similarity_fct": dot_score}, {"similarity_fct": st_dot_score}
    ours = ContrastiveTensionLossInBatchNegatives(model, scale=scale, **kwargs)
    ref = st_losses.ContrastiveTensionLossInBatchNegatives(st_model, scale=scale, **st_kwargs)
    assert ours.trainable_modules() == [ours.model1, ours.scale_module]
    sentences = make_sentences(7, seed=4)
    results = []
    for loss, tokenize in ((ours, model.tokenize), (ref, st_model.preprocess)):
        loss.zero_grad()
        value = loss([tokenize(sentences)], None)
        value.backward()
        results.append(
            (
                value.detach(),
                loss.logit_scale.grad.clone(),
                _grads(find_transformer(loss.model1)),
                _grads(find_transformer(loss.model2)),
            )
        )
    torch.testing.assert_close(results[0][0], results[1][0], **TOL)
    torch.testing.assert_close(results[0][1], results[1][1], **TOL)
    _assert_grads_equal(results[0][2], results[1][2])
    _assert_grads_equal(results[0][3], results[1][3])
    config, ref_config = ours.get_config_dict(), ref.get_config_dict()
    assert config == {**ref_config, "gather_across_devices": True}
