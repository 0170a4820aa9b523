"""Internal weight loads and checkpoint saves draw no transformers progress bar; the user's own loads still do."""

from __future__ import annotations

import pytest
from huggingface_hub import utils as hub_utils
from transformers.utils import logging as hf_logging

from raystx.models import SentenceTransformer
from raystx.quiet import no_weight_bars
from raystx.train.checkpoint import load_model_weights

BAR = "Loading weights"


@pytest.fixture
def bars_on():
    hf_logging.enable_progress_bar()
    yield
    hf_logging.enable_progress_bar()


def test_bars_are_off_inside_and_restored_after_even_on_error(bars_on):
    with pytest.raises(RuntimeError), no_weight_bars():
        assert not hf_logging.is_progress_bar_enabled()
        raise RuntimeError("boom")
    assert hf_logging.is_progress_bar_enabled()
    assert not hub_utils.are_progress_bars_disabled()


def test_a_user_who_turned_the_hub_bars_off_keeps_them_off(bars_on):
    hub_utils.disable_progress_bars()
    try:
        with no_weight_bars():
            pass
        assert hf_logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled()
    finally:
        hub_utils.enable_progress_bars()


def test_loading_checkpoint_weights_draws_no_bar_but_a_user_load_does(
    bars_on, tiny_bert_dir, tmp_path, capfd
):
    saved = tmp_path / "model"
    SentenceTransformer(str(tiny_bert_dir), device="cpu").save(str(saved))
    capfd.readouterr()
    target = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    assert BAR in capfd.readouterr().err  # the user's own load: the bar shows (this test can fail)
    load_model_weights(target, saved)
    assert BAR not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
