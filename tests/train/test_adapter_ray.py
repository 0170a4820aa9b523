"""LoRA training on 2 real Ray workers: only the adapter trains and is synced (identical on both ranks), the base
model never moves, and checkpoints hold the adapter and its optimizer state only."""

from __future__ import annotations

import datasets
import pytest
import torch
from conftest import make_sentences
from safetensors import safe_open
from safetensors.torch import load_file

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.models.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PEFT_KEY_PREFIX
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.ray


def test_lora_on_two_workers_trains_and_syncs_only_the_adapter(ray_session, tiny_bert_dir, tmp_path):
    from ray.train import ScalingConfig

    # defined here so Ray pickles it by value (workers cannot import this test module)
    class Snapshots(MultipleNegativesRankingLoss):
        """MNRL that writes, at each training forward, this rank's adapter and frozen weights to a file."""

        def __init__(self, model, out_dir: str) -> None:
            super().__init__(model)
            self.out_dir, self.calls = out_dir, 0

        def forward(self, features, labels):
            import torch.distributed as dist
            from safetensors.torch import save_file

            self.calls += 1
            tensors = {
                f"{'adapter' if p.requires_grad else 'frozen'}:{n}": p.detach().cpu().contiguous().clone()
                for n, p in self.model.named_parameters()
            }
            save_file(tensors, f"{self.out_dir}/rank{dist.get_rank()}_call{self.calls}.safetensors")
            return super().forward(features, labels)

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.add_adapter(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapter_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sum(initial[n].numel() for n in adapter_names) == 4 * 4 * (32 + 32)
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    output_dir = tmp_path / "run"
    data = datasets.Dataset.from_dict({"anchor": make_sentences(64, 1), "positive": make_sentences(64, 2)})
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(output_dir),
            max_steps=4,
            per_device_train_batch_size=8,
            learning_rate=1e-2,
            logging_steps=1,
            save_steps=2,
            disable_tqdm=True,
            seed=2,
        ),
        train_dataset=data,
        loss=Snapshots(model, str(snaps)),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    trainer.train()

    # the driver's model came back with a trained adapter and the untouched base
    for name, param in model.named_parameters():
        if name in adapter_names:
            assert (param - initial[name]).abs().max() > 1e-4, name
        else:
            assert torch.equal(param, initial[name]), name

    # both ranks hold the same adapter at every step (gradients synced), and never moved the base model
    for call in range(1, 5):
        ranks = [load_file(str(snaps / f"rank{r}_call{call}.safetensors")) for r in (0, 1)]
        assert ranks[0].keys() == ranks[1].keys()
        assert sorted(k.split(":", 1)[1] for k in ranks[0] if k.startswith("adapter:")) == sorted(
            adapter_names
        )
        for key in ranks[0]:
            assert torch.equal(ranks[0][key], ranks[1][key]), (call, key)
            if key.startswith("frozen:"):
                assert torch.equal(ranks[0][key], initial[key.split(":", 1)[1]]), (call, key)
    moved = load_file(str(snaps / "rank0_call4.safetensors"))
    assert all((moved[f"adapter:{n}"] - initial[n]).abs().max() > 1e-4 for n in adapter_names)

    # checkpoint-2: the adapter after 2 steps (what both ranks held at their 3rd forward) and its AdamW state only
    checkpoint = output_dir / "checkpoint-2"
    files = {p.name for p in (checkpoint / "model").iterdir()}
    assert {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME} <= files and "model.safetensors" not in files
    third = load_file(str(snaps / "rank1_call3.safetensors"))
    with safe_open(str(checkpoint / "model" / ADAPTER_WEIGHTS_NAME), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    assert len(saved) == len(adapter_names) == 8
    for name in adapter_names:  # "0.auto_model.encoder...lora_A.default.weight" -> PEFT key
        peft_key = PEFT_KEY_PREFIX + name.split("auto_model.", 1)[1].replace(".default.", ".")
        torch.testing.assert_close(saved[peft_key], third[f"adapter:{name}"], rtol=0, atol=0)
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert sum(s["exp_avg"].numel() for s in optimizer["state"].values()) == 4 * 4 * (32 + 32)


def test_a_frozen_loaded_adapter_fails_on_the_driver_before_any_worker(ray_session, tiny_bert_dir, tmp_path):
    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.add_adapter(peft.LoraConfig(r=2, target_modules=["query"]))
    model.save(str(tmp_path / "adapter"))
    frozen = SentenceTransformer(str(tmp_path / "adapter"), device="cpu")  # loaded for inference
    data = datasets.Dataset.from_dict({"anchor": make_sentences(8, 1), "positive": make_sentences(8, 2)})
    trainer = SentenceTransformerTrainer(
        model=frozen,
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(frozen),
    )
    with pytest.raises(ValueError, match=r"No parameter .* requires a gradient.*set_adapter\(name\)"):
        trainer.train()
    assert not (tmp_path / "run").exists()  # nothing written
