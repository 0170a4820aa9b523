"""Every loss in ``raystx.losses`` trains inside a real 2-worker Ray run, and its loss goes down.

One Ray ``TorchTrainer`` run trains a loss dict over one small dataset per loss (each in its loss's format,
``round_robin``, so every loss gets the same number of updates); a second run does the batch triplet losses,
which need ``batch_sampler="group_by_label"`` (a trainer-wide setting that every dataset of the run must
support). Before and after each run the driver evaluates every loss on a fixed batch (its whole dataset) with
dropout off and the same random draws (layers / dimensions sampled by the wrappers), and the loss must have
gone down. Losses that own parameters (SoftmaxLoss head, TSDAE decoder, EmbedDistill projection, the second
Contrastive-Tension model) must come back to the driver trained: that is checked on their parameters too.

All losses share one model, so their datasets tell one consistent story (a sentence with its words reversed
or loosely paraphrased is similar, other text is not) and their updates add up instead of fighting; targets
that fix a scale (MarginMSE's margins, DistillKLDiv's teacher scores) are put on the scale the other losses
move the student to. The teacher for the distillation losses and the guide for GIST is a second tiny random
BERT (another seed).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from conftest import WORDS, build_tiny_bert, make_sentences
from torch import nn

from raystx.data.collate import BatchCollator
from raystx.data.sources import prepare_sources, validate_sources
from raystx.losses import (
    AdaptiveLayerLoss,
    AnglELoss,
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    CachedMultipleNegativesSymmetricRankingLoss,
    ContrastiveLoss,
    ContrastiveTensionLoss,
    ContrastiveTensionLossInBatchNegatives,
    CoSENTLoss,
    CosineSimilarityLoss,
    DenoisingAutoEncoderLoss,
    DistillKLDivLoss,
    EmbedDistillLoss,
    GISTEmbedLoss,
    GlobalOrthogonalRegularizationLoss,
    MarginMSELoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
    MegaBatchMarginLoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
    OnlineContrastiveLoss,
    SoftmaxLoss,
    TripletLoss,
)
from raystx.losses.denoising_auto_encoder import make_denoising_pairs
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.util import dot_score, pairwise_cos_sim

pytestmark = pytest.mark.ray

PER_DEVICE = 4
WORKERS = 2
ROWS = 16  # two global batches of 8 per dataset and epoch
EPOCHS = 5  # round robin: each loss gets ROWS / 8 * EPOCHS = 10 updates
LABELLED_ROWS = 32  # batch triplet datasets: 4 global batches of label pairs per epoch
LABELLED_EPOCHS = 3  # 12 updates each
LEARNING_RATE = 2e-3
PROJECTION_DIM = 24  # EmbedDistill's projection maps the 32-d student into a 24-d "teacher" space

LossFactory = Callable[[SentenceTransformer, SentenceTransformer], nn.Module]


# ---------------------------------------------------------------------------------------------------- data
def _reverse(sentence: str) -> str:
    return " ".join(reversed(sentence.split()))


def _ranking(seed: int, negatives: int = 0) -> dict[str, list[str]]:
    """(anchor, positive[, negative...]): the positive is the anchor's words reversed, negatives are other text."""
    anchors = make_sentences(ROWS, seed)
    columns = {"anchor": anchors, "positive": [_reverse(a) for a in anchors]}
    names = ["negative"] if negatives == 1 else [f"negative_{i + 1}" for i in range(negatives)]
    for i, name in enumerate(names):
        columns[name] = make_sentences(ROWS, seed * 100 + i + 1)
    return columns


def _paraphrase(sentence: str, seed: int, replace: float = 0.5) -> str:
    """A loose paraphrase: about ``replace`` of the words swapped for random ones, then shuffled."""
    rng = random.Random(seed)
    words = [w if rng.random() > replace else rng.choice(WORDS) for w in sentence.split()]
    rng.shuffle(words)
    return " ".join(words)


def _unrelated(sentence: str, other: str, seed: int) -> str:
    """Another sentence that still shares two words with ``sentence`` (a not-too-easy negative)."""
    words = sentence.split()
    return " ".join(other.split() + random.Random(seed).sample(words, min(2, len(words))))


def _scored(seed: int) -> dict[str, list[Any]]:
    """(sentence1, sentence2, score): word-reversed copies (1.0), loose paraphrases (0.5), other text (0.0)."""
    first = make_sentences(ROWS, seed)
    other = make_sentences(ROWS, seed * 100 + 1)
    second, score = [], []
    for i, (a, b) in enumerate(zip(first, other)):
        kind = i % 3
        second.append([_reverse(a), _paraphrase(a, seed + i), _unrelated(a, b, seed + i)][kind])
        score.append([1.0, 0.5, 0.0][kind])
    return {"sentence1": first, "sentence2": second, "score": score}


def _binary(seed: int) -> dict[str, list[Any]]:
    """(sentence1, sentence2, label): 1 for a loose paraphrase, 0 for other text sharing a few words.

    Loose enough that some positives start farther apart than some negatives (OnlineContrastiveLoss only
    learns from such hard pairs)."""
    first = make_sentences(ROWS, seed)
    other = make_sentences(ROWS, seed * 100 + 1)
    second = [
        _paraphrase(a, seed + i) if i % 2 == 0 else _unrelated(a, b, seed + i)
        for i, (a, b) in enumerate(zip(first, other))
    ]
    return {"sentence1": first, "sentence2": second, "label": [1 - i % 2 for i in range(ROWS)]}


def _classes(seed: int, rows: int = ROWS, num_labels: int = 4) -> dict[str, list[Any]]:
    """(text, label): each class has its own key word in front of random text."""
    keys = ["cat", "car", "sea", "book", "sun", "tree", "music", "rain"][:num_labels]
    texts = make_sentences(rows, seed)
    return {
        "text": [f"{keys[i % num_labels]} {t}" for i, t in enumerate(texts)],
        "label": [i % num_labels for i in range(rows)],
    }


def _class_pairs(seed: int) -> dict[str, list[Any]]:
    """(premise, hypothesis, label) with three classes, for SoftmaxLoss."""
    return {
        "premise": make_sentences(ROWS, seed),
        "hypothesis": make_sentences(ROWS, seed * 100 + 1),
        "label": [i % 3 for i in range(ROWS)],
    }


def _embed(model: SentenceTransformer, texts: list[str]) -> torch.Tensor:
    return torch.as_tensor(model.encode(texts, convert_to_numpy=True))


def _distillation(seed: int, teacher: SentenceTransformer) -> dict[str, dict[str, list[Any]]]:
    """Datasets whose labels a teacher (a second tiny BERT) or random vectors produce."""
    english = make_sentences(ROWS, seed)
    mse = {"english": english, "translation": [_reverse(s) for s in english]}
    mse["label"] = _embed(teacher, english).tolist()  # both columns learn the teacher's English embedding

    rng = np.random.default_rng(seed)
    distill = {"text": make_sentences(ROWS, seed + 1)}
    distill["label"] = rng.normal(size=(ROWS, PROJECTION_DIM)).tolist()

    triplets = _ranking(seed + 2, negatives=2)
    q, p, n1, n2 = (_embed(teacher, triplets[c]) for c in ("anchor", "positive", "negative_1", "negative_2"))
    p_score, n1_score, n2_score = (q * p).sum(-1), (q * n1).sum(-1), (q * n2).sum(-1)
    margin = {k: triplets[k] for k in ("anchor", "positive", "negative_1")}
    # MarginMSE fits the margin's size, not just its sign, so give it the scale the other losses settle on
    # (cosine margins near 1 between a reversed copy and another sentence) rather than the random teacher's.
    cos_margin = torch.cosine_similarity(q, p) - torch.cosine_similarity(q, n1)
    margin["label"] = (cos_margin / cos_margin.mean()).tolist()
    kl = dict(triplets)
    # A random tiny teacher scores everything alike (dot products ~30 apart by ~1): sharpen its ranking of the
    # word-reversed positive above the other sentences, which is what every other loss teaches the student too.
    kl["label"] = (torch.stack([p_score, n1_score, n2_score], dim=1) * 5.0).tolist()
    return {"mse": mse, "embed_distill": distill, "margin_mse": margin, "distill_kl": kl}


def _unsupervised(seed: int) -> dict[str, dict[str, list[Any]]]:
    texts = make_sentences(ROWS, seed)
    others = make_sentences(ROWS, seed + 1)
    # Contrastive tension: one identical pair in four (two per global batch), the rest different sentences.
    tension = {
        "text1": texts,
        "text2": [t if i % 4 == 0 else o for i, (t, o) in enumerate(zip(texts, others))],
    }
    return {
        "tsdae": make_denoising_pairs(make_sentences(ROWS, seed + 2), del_ratio=0.6, seed=seed),
        "ct": tension,
        "ct_in_batch": {"text": make_sentences(ROWS, seed + 3)},
    }


def _main_cases(
    teacher: SentenceTransformer, decoder_dir: Path
) -> dict[str, tuple[dict[str, list[Any]], LossFactory]]:
    """Dataset name -> (columns, loss factory ``(model, guide) -> loss``) for the default batch sampler.

    The tied TSDAE decoder is built from the encoder's own directory; the untied one loads ``decoder_dir``.
    """

    def dim(m: SentenceTransformer) -> int:
        return m.get_sentence_embedding_dimension()

    cases: dict[str, tuple[dict[str, list[Any]], LossFactory]] = {
        # ---- ranking: MultipleNegativesRankingLoss and its options
        "mnrl": (_ranking(1), lambda m, g: MultipleNegativesRankingLoss(m)),
        "mnrl_hard_negative": (_ranking(2, negatives=1), lambda m, g: MultipleNegativesRankingLoss(m)),
        "mnrl_hardness": (
            _ranking(3, negatives=2),
            lambda m, g: MultipleNegativesRankingLoss(
                m, hardness_mode="all_negatives", hardness_strength=5.0
            ),
        ),
        "mnrl_all_directions": (
            _ranking(4, negatives=1),
            lambda m, g: MultipleNegativesRankingLoss(
                m, directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
            ),
        ),
        "mnrl_per_direction": (
            _ranking(5),
            lambda m, g: MultipleNegativesRankingLoss(
                m, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
            ),
        ),
        "mnrl_local_dot": (
            _ranking(6, negatives=1),
            lambda m, g: MultipleNegativesRankingLoss(
                m,
                scale=0.2,
                similarity_fct=dot_score,
                gather_across_devices=False,
                hardness_mode="in_batch_negatives",
                hardness_strength=1.0,
            ),
        ),
        "mn_symmetric": (_ranking(7), lambda m, g: MultipleNegativesSymmetricRankingLoss(m)),
        "cached_mnrl": (
            _ranking(8, negatives=1),
            lambda m, g: CachedMultipleNegativesRankingLoss(m, mini_batch_size=2),
        ),
        "cached_mn_symmetric": (
            _ranking(9),
            lambda m, g: CachedMultipleNegativesSymmetricRankingLoss(m, mini_batch_size=2),
        ),
        "gist": (_ranking(10, negatives=1), lambda m, g: GISTEmbedLoss(m, g)),
        "cached_gist": (_ranking(11), lambda m, g: CachedGISTEmbedLoss(m, g, mini_batch_size=2)),
        "mega_batch_margin": (_ranking(12), lambda m, g: MegaBatchMarginLoss(m, mini_batch_size=2)),
        # ---- pairs with a score or a class
        "cosent": (_scored(13), lambda m, g: CoSENTLoss(m)),
        "angle": (_scored(14), lambda m, g: AnglELoss(m)),
        "cosine_similarity": (_scored(15), lambda m, g: CosineSimilarityLoss(m)),
        "softmax": (_class_pairs(16), lambda m, g: SoftmaxLoss(m, dim(m), num_labels=3)),
        "contrastive": (_binary(17), lambda m, g: ContrastiveLoss(m)),
        "online_contrastive": (_binary(18), lambda m, g: OnlineContrastiveLoss(m)),
        "triplet": (_ranking(19, negatives=1), lambda m, g: TripletLoss(m)),
        # ---- unsupervised and regularisers
        "gor": (_ranking(20), lambda m, g: GlobalOrthogonalRegularizationLoss(m)),
        # ---- wrappers
        "matryoshka": (_scored(21), lambda m, g: MatryoshkaLoss(m, CoSENTLoss(m), [dim(m), 16, 8])),
        "matryoshka_cached": (
            _ranking(22),
            lambda m, g: MatryoshkaLoss(
                m, CachedMultipleNegativesRankingLoss(m, mini_batch_size=2), [dim(m), 16]
            ),
        ),
        "matryoshka_2d": (
            _ranking(23),
            lambda m, g: Matryoshka2dLoss(m, MultipleNegativesRankingLoss(m), [dim(m), 16, 8]),
        ),
        "adaptive_layer": (_ranking(24), lambda m, g: AdaptiveLayerLoss(m, MultipleNegativesRankingLoss(m))),
    }
    distill = _distillation(30, teacher)
    cases["mse"] = (distill["mse"], lambda m, g: MSELoss(m))
    cases["embed_distill"] = (
        distill["embed_distill"],
        lambda m, g: EmbedDistillLoss(m, distance_metric="cosine", projection_dim=PROJECTION_DIM),
    )
    cases["margin_mse"] = (
        distill["margin_mse"],
        lambda m, g: MarginMSELoss(m, similarity_fct=pairwise_cos_sim),
    )
    cases["distill_kl"] = (distill["distill_kl"], lambda m, g: DistillKLDivLoss(m))
    unsupervised = _unsupervised(40)
    cases["tsdae"] = (
        unsupervised["tsdae"],
        lambda m, g: DenoisingAutoEncoderLoss(m, tie_encoder_decoder=True),
    )
    cases["tsdae_untied"] = (
        _unsupervised(41)["tsdae"],
        lambda m, g: DenoisingAutoEncoderLoss(
            m, decoder_name_or_path=str(decoder_dir), tie_encoder_decoder=False
        ),
    )
    cases["ct"] = (unsupervised["ct"], lambda m, g: ContrastiveTensionLoss(m))
    cases["ct_in_batch"] = (
        unsupervised["ct_in_batch"],
        lambda m, g: ContrastiveTensionLossInBatchNegatives(m),
    )
    return cases


def _labelled_cases() -> dict[str, tuple[dict[str, list[Any]], LossFactory]]:
    """The batch triplet losses: single sentences with a class label, batches grouped by label."""
    return {
        "batch_all": (_classes(50, LABELLED_ROWS), lambda m, g: BatchAllTripletLoss(m)),
        "batch_hard": (_classes(51, LABELLED_ROWS), lambda m, g: BatchHardTripletLoss(m)),
        "batch_semi_hard": (_classes(52, LABELLED_ROWS), lambda m, g: BatchSemiHardTripletLoss(m)),
        "batch_hard_soft_margin": (
            _classes(53, LABELLED_ROWS),
            lambda m, g: BatchHardSoftMarginTripletLoss(m),
        ),
    }


# ---------------------------------------------------------------------------------------------------- evaluation
class FixedBatches:
    """Each dataset's rows collated exactly as a worker collates them (columns, label kind), on the driver."""

    def __init__(
        self, data: dict[str, datasets.Dataset], losses: dict[str, nn.Module], staging: Path
    ) -> None:
        self.sources = prepare_sources(data, staging_dir=str(staging))
        matched = validate_sources(self.sources, losses, global_batch_size=PER_DEVICE * WORKERS)
        self.label_kinds = {name: contract.label for name, contract in matched.items()}

    def batch(self, model: SentenceTransformer, name: str) -> tuple[list[dict[str, torch.Tensor]], Any]:
        source = self.sources[name]
        collate = BatchCollator(
            model.tokenize,
            {name: source.input_columns},
            {name: source.label_column},
            self.label_kinds,
        )
        return collate(name, source.take(range(source.num_rows)))


def _scalar(value: torch.Tensor | dict[str, torch.Tensor]) -> float:
    return float(sum(value.values()) if isinstance(value, dict) else value)


@torch.no_grad()
def evaluate(
    model: SentenceTransformer, losses: dict[str, nn.Module], batches: FixedBatches
) -> dict[str, float]:
    """Each loss on its whole dataset as one batch: dropout off, and the same random draws every time."""
    model.eval()
    out = {}
    for name, loss in losses.items():
        loss.eval()
        random.seed(0)
        torch.manual_seed(0)
        features, labels = batches.batch(model, name)
        out[name] = _scalar(loss(features, labels))
    return out


def _own_parameters(losses: dict[str, nn.Module], model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Per loss, the trainable parameters it owns beyond the model (heads, decoders, second models)."""
    model_params = {id(p) for p in model.parameters()}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, loss in losses.items():
        for i, module in enumerate(loss.trainable_modules()):
            for key, param in module.named_parameters():
                if id(param) not in model_params:
                    out.setdefault(name, {})[f"{i}.{key}"] = param.detach().clone()
    return out


# ---------------------------------------------------------------------------------------------------- one run
def train_all(
    cases: dict[str, tuple[dict[str, list[Any]], LossFactory]],
    tiny_bert_dir: Path,
    guide: SentenceTransformer,
    root: Path,
    *,
    epochs: int,
    batch_sampler: str = "batch_sampler",
) -> dict[str, Any]:
    """Train all ``cases`` as one loss dict in one 2-worker Ray run; losses and parameters before and after."""
    from ray.train import ScalingConfig

    torch.manual_seed(0)  # loss heads start the same every time
    model = SentenceTransformer(str(tiny_bert_dir))
    data = {name: datasets.Dataset.from_dict(columns) for name, (columns, _) in cases.items()}
    losses = {name: factory(model, guide) for name, (_, factory) in cases.items()}
    batches = FixedBatches(data, losses, root / "fixed")
    before = evaluate(model, losses, batches)
    own_before = _own_parameters(losses, model)
    model_before = copy.deepcopy(model.state_dict())

    args = SentenceTransformerTrainingArguments(
        output_dir=str(root / "out"),
        num_train_epochs=epochs,
        per_device_train_batch_size=PER_DEVICE,
        learning_rate=LEARNING_RATE,
        multi_dataset_batch_sampler="round_robin",
        batch_sampler=batch_sampler,
        # Log (and so ray.train.report) only at the end: Ray Train's controller takes one report per worker
        # every 2 s (its health-check poll), so a report every few fast steps would stall the run.
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=datasets.DatasetDict(data),
        loss=losses,
        scaling_config=ScalingConfig(num_workers=WORKERS, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    out = trainer.train()
    after = evaluate(model, losses, batches)
    return {
        "before": before,
        "after": after,
        "out": out,
        "own_before": own_before,
        "own_after": _own_parameters(losses, model),
        "model_before": model_before,
        "model": model,
        "steps_per_loss": out.global_step / len(cases),
    }


@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> SentenceTransformer:
    """A second tiny random BERT (another seed, same vocabulary): GIST's guide and the distillation teacher."""
    return SentenceTransformer(str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-guide"), seed=1)))


def _report(result: dict[str, Any]) -> str:
    return "\n".join(
        f"{name:>24}: {result['before'][name]:.5f} -> {result['after'][name]:.5f}"
        for name in result["before"]
    )


def _check(result: dict[str, Any], cases: dict[str, Any]) -> None:
    report = _report(result)
    print(report)
    assert set(result["before"]) == set(cases)
    for name in cases:
        before, after = result["before"][name], result["after"][name]
        assert np.isfinite([before, after]).all(), f"{name}: non-finite loss\n{report}"
        assert before > 0, f"{name}: nothing to learn on the fixed batch\n{report}"
        assert after < before, f"{name}: the loss did not go down\n{report}"
    logged = [h["loss"] for h in result["out"].log_history if "loss" in h]
    assert logged and np.isfinite(logged).all()
    trained = result["model"].state_dict()
    assert max(float((result["model_before"][k] - trained[k]).abs().max()) for k in trained) > 1e-3


def _check_own_parameters(result: dict[str, Any], expected: set[str]) -> None:
    """Heads, decoders and second models came back to the driver trained (not the driver's initial copies)."""
    assert set(result["own_before"]) == expected
    for name, params in result["own_before"].items():
        after = result["own_after"][name]
        moved = max(float((params[k] - after[k]).abs().max()) for k in params)
        assert moved > 1e-4, f"{name}: its own parameters are the untrained ones on the driver"


# ---------------------------------------------------------------------------------------------------- tests
def test_every_loss_trains_in_a_two_worker_run(ray_session, tiny_bert_dir, guide, tmp_path):
    cases = _main_cases(guide, tiny_bert_dir)
    guide_before = copy.deepcopy(guide.state_dict())
    result = train_all(cases, tiny_bert_dir, guide, tmp_path, epochs=EPOCHS)
    assert result["steps_per_loss"] == ROWS // (PER_DEVICE * WORKERS) * EPOCHS
    _check(result, cases)
    _check_own_parameters(result, {"softmax", "embed_distill", "tsdae", "tsdae_untied", "ct", "ct_in_batch"})
    # The GIST guide only scores: it comes back from the workers (it is part of the losses' state) unchanged.
    for key, value in guide.state_dict().items():
        torch.testing.assert_close(value, guide_before[key], rtol=0, atol=0, msg=key)


def test_batch_triplet_losses_train_with_group_by_label_batches(ray_session, tiny_bert_dir, guide, tmp_path):
    cases = _labelled_cases()
    result = train_all(
        cases, tiny_bert_dir, guide, tmp_path, epochs=LABELLED_EPOCHS, batch_sampler="group_by_label"
    )
    assert result["steps_per_loss"] == LABELLED_ROWS // (PER_DEVICE * WORKERS) * LABELLED_EPOCHS
    _check(result, cases)


def test_every_exported_loss_is_covered():
    import raystx.losses as losses_module

    exported = {
        name
        for name in losses_module.__all__
        if isinstance(getattr(losses_module, name), type)
        and issubclass(getattr(losses_module, name), nn.Module)
        and name != "RaystxLoss"
    }
    source = Path(__file__).read_text(encoding="utf-8")
    missing = sorted(name for name in exported if f"{name}(m" not in source)
    assert not missing, f"losses without a training case: {missing}"
