"""SentenceTransformerTrainingArguments accepts what sentence-transformers accepts and rejects what it rejects.

Oracles: transformers' ``TrainingArguments`` (field names, optimizers via ``Trainer.get_optimizer_cls_and_kwargs``)
and sentence-transformers' ``SentenceTransformerTrainingArguments``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import transformers
from sentence_transformers import SentenceTransformerTrainingArguments as STArgs
from sentence_transformers.training_args import BatchSamplers as STBatchSamplers

from raystx.data.schedule import compose_batches
from raystx.train.args import BatchSamplers, IgnoredArgumentWarning, SentenceTransformerTrainingArguments
from raystx.train.hf_fields import EXTRA_FIELDS
from raystx.train.optim import build_optimizer


def _quiet(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformerTrainingArguments(**kwargs)


def _st(tmp_path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return STArgs(output_dir=str(tmp_path), **kwargs)


def test_every_transformers_field_is_accepted() -> None:
    ours = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    for f in dataclasses.fields(transformers.TrainingArguments):
        if not f.init:
            continue
        assert f.name in ours, f.name
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        _quiet(**{f.name: default})  # accepted by name, no TypeError


def test_every_sentence_transformers_field_is_accepted() -> None:
    ours = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    assert {f.name for f in dataclasses.fields(STArgs) if f.init} - ours == set()


def test_default_arguments_warn_about_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SentenceTransformerTrainingArguments(output_dir="x", do_train=True, remove_unused_columns=False)


def test_fields_without_meaning_on_ray_are_named_once_with_the_replacement() -> None:
    with pytest.warns(IgnoredArgumentWarning) as record:
        SentenceTransformerTrainingArguments(
            output_dir="x",
            local_rank=0,
            deepspeed="ds.json",
            ddp_backend="nccl",
            torch_compile=True,
        )
    assert len(record) == 1
    message = str(record[0].message)
    for name in ("local_rank", "deepspeed", "ddp_backend", "torch_compile"):
        assert message.count(f"- {name}:") == 1
    assert "ScalingConfig" in message and "fsdp=True" in message
    assert "not use it yet" in message.split("torch_compile:")[1]


# A typical sentence-transformers script's arguments (training examples of its documentation).
SCRIPT_KWARGS = dict(
    num_train_epochs=1,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    learning_rate=2e-5,
    warmup_ratio=0.1,
    fp16=False,
    bf16=False,
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    eval_strategy="steps",
    eval_steps=100,
    save_strategy="steps",
    save_steps=100,
    save_total_limit=2,
    logging_steps=100,
    run_name="mpnet-base-all-nli-triplet",
    seed=12,
    optim="adamw_torch",
    dataloader_num_workers=0,
    dataloader_drop_last=True,
    prompts={"anchor": "query: "},
    learning_rate_mapping='{"0\\\\..*": 1e-4}',
    report_to="none",
    hub_model_id="me/model",
    push_to_hub=False,
    load_best_model_at_end=True,
    metric_for_best_model="eval_sts-dev_spearman_cosine",
)


def test_a_script_sentence_transformers_accepts_constructs_and_validates(tmp_path) -> None:
    st = _st(tmp_path, **SCRIPT_KWARGS)
    ours = _quiet(output_dir=str(tmp_path), **SCRIPT_KWARGS)
    ours.validate(use_gpu=False)
    assert ours.learning_rate_mapping == st.learning_rate_mapping == {"0\\..*": 1e-4}
    assert ours.batch_sampler.value == st.batch_sampler.value == "no_duplicates"
    assert ours.warmup_ratio == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eval_strategy": "sometimes"},
        {"batch_sampler": "nope"},
        {"multi_dataset_batch_sampler": "nope"},
        {"load_best_model_at_end": True},
        {"load_best_model_at_end": True, "eval_strategy": "steps", "eval_steps": 3, "save_steps": 4},
        {"learning_rate_mapping": "not json"},
        {"router_mapping": "not json"},
        {"optim": "not_an_optimizer"},
    ],
)
def test_what_sentence_transformers_rejects_raystx_rejects_with_the_same_error(tmp_path, kwargs) -> None:
    with pytest.raises(Exception) as st_error:
        _st(tmp_path, **kwargs)
    with pytest.raises(type(st_error.value)):
        _quiet(output_dir=str(tmp_path), **kwargs).validate(use_gpu=False)


def test_unknown_argument_is_a_type_error_in_both(tmp_path) -> None:
    with pytest.raises(TypeError):
        _st(tmp_path, not_a_field=1)
    with pytest.raises(TypeError, match="not_a_field"):
        SentenceTransformerTrainingArguments(not_a_field=1)


def test_unsupported_optimizer_names_the_supported_ones() -> None:
    args = _quiet(optim="adamw_8bit")  # valid in transformers, so construction succeeds as in ST
    with pytest.raises(
        ValueError, match="optim='adamw_8bit'.*adamw_torch, adamw_torch_fused, adafactor, sgd"
    ):
        args.validate()


@pytest.mark.parametrize(
    ("optim", "optim_args"),
    [
        ("adamw_torch", None),
        ("adamw_torch_fused", None),
        ("adafactor", None),
        ("sgd", None),
        ("sgd", "momentum=0.9,nesterov=True,dampening=0"),
    ],
)
def test_optimizers_step_like_transformers(tmp_path, optim, optim_args) -> None:
    kwargs = dict(
        optim=optim,
        optim_args=optim_args,
        learning_rate=3e-2,
        weight_decay=0.1,
        adam_beta1=0.8,
        adam_epsilon=1e-6,
    )
    hf_args = transformers.TrainingArguments(output_dir=str(tmp_path), **kwargs)
    cls, hf_kwargs = transformers.Trainer.get_optimizer_cls_and_kwargs(hf_args)

    from collections import OrderedDict

    def build():
        return torch.nn.Sequential(OrderedDict(dense=torch.nn.Linear(6, 5), LayerNorm=torch.nn.LayerNorm(5)))

    torch.manual_seed(0)
    ours_model, ref_model = build(), build()
    ref_model.load_state_dict(ours_model.state_dict())
    named = [(f"0.{n}", p) for n, p in ours_model.named_parameters()]
    ours = build_optimizer(named, _quiet(**kwargs))
    expected_class = torch.optim.AdamW if optim.startswith("adamw") else cls
    assert type(ours) is expected_class
    decay = [p for n, p in ref_model.named_parameters() if n == "dense.weight"]
    no_decay = [p for n, p in ref_model.named_parameters() if n != "dense.weight"]
    ref = cls(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], **hf_kwargs
    )
    x = torch.randn(8, 6)
    for _ in range(3):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            (model(x) ** 2).sum().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_float_warmup_steps_is_a_ratio_as_in_transformers_5() -> None:
    args = _quiet(warmup_steps=0.25)
    assert (args.warmup_steps, args.warmup_ratio) == (0, 0.25)


def test_hub_token_is_masked_in_dicts() -> None:
    args = _quiet(hub_token="hf_secret")
    assert args.to_dict()["hub_token"] == "<HUB_TOKEN>" and args.hub_token == "hf_secret"
    assert "hf_secret" not in str(args.non_default_items())


def test_no_duplicates_hashed_is_sentence_transformers_value_with_the_same_batches() -> None:
    assert BatchSamplers.NO_DUPLICATES_HASHED.value == STBatchSamplers.NO_DUPLICATES_HASHED.value
    assert {m.value for m in STBatchSamplers} <= {m.value for m in BatchSamplers}
    texts = [(f"t{i % 7}", f"u{i % 5}") for i in range(40)]
    order = np.random.default_rng(0).permutation(40)
    plain = compose_batches(order, 4, "no_duplicates", texts=texts)
    hashed = compose_batches(order, 4, "no_duplicates_hashed", texts=texts)
    assert len(plain) > 0 and all((a == b).all() for a, b in zip(plain, hashed)) and len(plain) == len(hashed)


def test_extra_field_defaults_are_transformers_defaults() -> None:
    reference = {f.name: f for f in dataclasses.fields(transformers.TrainingArguments)}
    for name, spec in EXTRA_FIELDS.items():
        if name not in reference:
            continue  # a sentence-transformers field (router_mapping)
        f = reference[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert spec.default == getattr(default, "value", default), name
