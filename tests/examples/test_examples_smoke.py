"""Every example runs with ``--smoke-test`` on the shared local Ray, and what it reports is checked.

Each example's ``main(argv)`` is called in this process (one Ray for all). The saved model is loaded with
sentence-transformers (the oracle) and must embed exactly like the trained raystx model, and the example's
reported metrics are recomputed with sentence-transformers' own evaluators on that model. So a test fails if
an example trains nothing, saves something other than the trained model, or reports numbers its model does
not produce.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

OWN_EXAMPLES = [
    "train_triplets",
    "train_cosent_sts",
    "train_multi_dataset",
    "train_matryoshka",
    "train_static_embedding",
    "distillation",
    "fit_api",
    "semantic_search",
]
OPTIONAL_EXAMPLES = [name for name in ("tune_losses",) if (EXAMPLES / f"{name}.py").is_file()]


# ------------------------------------------------------------------------------------------------ helpers
def _main(name: str, argv: list[str]) -> Any:
    """``module.main(argv)``; for a ``main()`` without parameters, with ``sys.argv`` set to ``argv`` instead."""
    main = importlib.import_module(name).main
    if inspect.signature(main).parameters:
        return main(argv)
    saved = sys.argv
    sys.argv = [f"{name}.py", *argv]
    try:
        return main()
    finally:
        sys.argv = saved


def _run(name: str, tmp_path: Path, *extra: str) -> Any:
    return _main(name, ["--smoke-test", "--output-dir", str(tmp_path), *extra])


def _st(path: str | Path, **kwargs: Any) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", **kwargs)


def _held_out() -> list[tuple[str, str]]:
    from toy_data import make_pairs

    return make_pairs(seed=0)[1]


def _texts() -> list[str]:
    return [t for pair in _held_out()[:6] for t in pair]


def _assert_same_model(raystx_model: Any, st_model: Any, atol: float = 1e-5) -> None:
    """The saved model, loaded by sentence-transformers, embeds like the trained raystx model."""
    texts = _texts()
    np.testing.assert_allclose(
        np.asarray(st_model.encode(texts)), np.asarray(raystx_model.encode(texts)), rtol=0, atol=atol
    )


def _moved(st_model: Any, start_dir: Path) -> float:
    """Largest change of any embedding value between the untrained model in ``start_dir`` and ``st_model``."""
    texts = _texts()
    return float(np.abs(st_model.encode(texts) - _st(start_dir).encode(texts)).max())


def _losses(out: dict[str, Any]) -> list[float]:
    return [h["loss"] for h in out["train_output"].log_history if "loss" in h]


def _st_sts(dev: dict[str, list], **kwargs: Any) -> Any:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    return EmbeddingSimilarityEvaluator(dev["sentence1"], dev["sentence2"], dev["score"], **kwargs)


def _st_triplets(dev: dict[str, list], **kwargs: Any) -> Any:
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    return TripletEvaluator(dev["anchor"], dev["positive"], dev["negative"], **kwargs)


# ------------------------------------------------------------------------------------------------ no Ray
def test_every_example_documents_its_smoke_command_and_parses_argv():
    for name in [*OWN_EXAMPLES, *OPTIONAL_EXAMPLES]:
        module = importlib.import_module(name)
        assert f"python examples/{name}.py --smoke-test" in (module.__doc__ or ""), name
        with pytest.raises(SystemExit) as exc:  # argparse's --help exits 0: main() parses what it is given
            _main(name, ["--help"])
        assert exc.value.code == 0, name


def test_semantic_search_matches_brute_force_with_the_oracle_model(tmp_path):
    out = _run("semantic_search", tmp_path, "--top-k", "3")
    st_model = _st(out["model_path"])
    corpus = st_model.encode(out["corpus"], normalize_embeddings=True)
    queries = st_model.encode(out["queries"], normalize_embeddings=True)
    scores = queries @ corpus.T
    assert len(out["hits"]) == len(out["queries"]) == 5
    for row, hits in zip(scores, out["hits"]):
        found = [i for i, _ in hits]
        assert len(set(found)) == 3
        # the reported scores are the oracle's for those entries, and no other entry scores higher
        np.testing.assert_allclose([s for _, s in hits], row[found], rtol=0, atol=1e-5)
        np.testing.assert_allclose([s for _, s in hits], np.sort(row)[::-1][:3], rtol=0, atol=1e-5)
    answers = [out["corpus"].index(p) for _, p in _held_out()[:5]]
    recall = np.mean([a in [i for i, _ in hits] for a, hits in zip(answers, out["hits"])])
    assert out["recall_at_k"] == pytest.approx(recall)


# ------------------------------------------------------------------------------------------------ on Ray
@pytest.mark.ray
@pytest.mark.slow  # CI budget: triplet data + MNRL: the multi-dataset example trains the same NLI triplets in CI
def test_train_triplets(ray_session, tmp_path):
    import _common

    out = _run("train_triplets", tmp_path)
    st_model = _st(out["model_path"])
    _assert_same_model(out["model"], st_model)
    assert _moved(st_model, tmp_path / "tiny-bert") > 1e-4
    assert out["train_output"].global_step >= 2 and all(np.isfinite(_losses(out)))
    expected = _st_triplets(_common.toy_triplets(_held_out()), name="nli-dev")(st_model)
    assert out["after"]["nli-dev_cosine_accuracy"] == pytest.approx(
        expected["nli-dev_cosine_accuracy"], abs=1e-6
    )


@pytest.mark.ray
@pytest.mark.slow  # CI budget: CoSENT on scored pairs: the multi-dataset example trains the same STS pairs in CI
def test_train_cosent_sts(ray_session, tmp_path):
    import _common

    out = _run("train_cosent_sts", tmp_path)
    st_model = _st(out["model_path"])
    _assert_same_model(out["model"], st_model)
    assert _moved(st_model, tmp_path / "tiny-bert") > 1e-4
    assert out["train_output"].global_step == 64 // (8 * 2)  # 32 pairs -> 64 scored rows; 2 workers x 8
    expected = _st_sts(_common.toy_scored(_held_out(), seed=1), name="sts-dev")(st_model)
    assert out["after"]["sts-dev_spearman_cosine"] == pytest.approx(
        expected["sts-dev_spearman_cosine"], abs=1e-6
    )


@pytest.mark.ray
def test_train_multi_dataset(ray_session, tmp_path):
    import _common

    from raystx.data.schedule import build_schedule

    out = _run("train_multi_dataset", tmp_path)
    st_model = _st(out["model_path"])
    _assert_same_model(out["model"], st_model)
    assert _moved(st_model, tmp_path / "tiny-bert") > 1e-4
    # nli: 48 triplets, stsb: 16 pairs -> 32 scored rows; global batch 16; one step per full batch of each
    schedule = build_schedule({"nli": 48, "stsb": 32}, 16, seed=12, epoch=0, sampler="proportional")
    assert sorted(schedule) == ["nli"] * 3 + ["stsb"] * 2
    assert out["train_output"].global_step == len(schedule) == len(_losses(out))
    sts = _st_sts(_common.toy_scored(_held_out(), seed=1), name="sts-dev")(st_model)
    nli = _st_triplets(_common.toy_triplets(_held_out()), name="nli-dev")(st_model)
    assert out["after"]["sts-dev_spearman_cosine"] == pytest.approx(sts["sts-dev_spearman_cosine"], abs=1e-6)
    assert out["after"]["nli-dev_cosine_accuracy"] == pytest.approx(nli["nli-dev_cosine_accuracy"], abs=1e-6)


@pytest.mark.ray
@pytest.mark.slow  # CI budget: MatryoshkaLoss trains on 2 workers in tests/losses/test_losses_train_ray.py in CI
def test_train_matryoshka(ray_session, tmp_path):
    import _common

    out = _run("train_matryoshka", tmp_path)
    st_model = _st(out["model_path"])
    _assert_same_model(out["model"], st_model)
    assert _moved(st_model, tmp_path / "tiny-bert") > 1e-4
    assert out["dims"] == [32, 16, 8]
    dev = _common.toy_scored(_held_out(), seed=1)
    for dim in out["dims"]:
        expected = _st_sts(dev, name=f"d{dim}", truncate_dim=dim)(st_model)[f"d{dim}_spearman_cosine"]
        assert out["after"][dim] == pytest.approx(expected, abs=1e-6), dim
    truncated = _st(out["model_path"], truncate_dim=8).encode(_texts())
    np.testing.assert_allclose(truncated, st_model.encode(_texts())[:, :8], rtol=0, atol=1e-6)


@pytest.mark.ray
def test_train_static_embedding(ray_session, tmp_path):
    import _common

    out = _run("train_static_embedding", tmp_path)
    st_model = _st(out["model_path"])
    assert type(st_model[0]).__name__ == "StaticEmbedding" and len(st_model) == 1
    assert st_model.get_embedding_dimension() == 32
    _assert_same_model(out["model"], st_model)
    assert out["train_output"].global_step == 64 // 16
    expected = _st_sts(_common.toy_scored(_held_out(), seed=1), name="sts-dev")(st_model)
    assert out["after"]["sts-dev_spearman_cosine"] == pytest.approx(
        expected["sts-dev_spearman_cosine"], abs=1e-6
    )
    assert out["after"]["sts-dev_spearman_cosine"] != out["before"]["sts-dev_spearman_cosine"]


@pytest.mark.ray
def test_distillation(ray_session, tmp_path):
    from sentence_transformers.sentence_transformer.evaluation import MSEEvaluator

    out = _run("distillation", tmp_path)
    st_student = _st(out["model_path"])
    _assert_same_model(out["model"], st_student)
    assert st_student[0].auto_model.config.num_hidden_layers == len(out["keep_layers"]) == 1
    teacher_dir = tmp_path / "tiny-bert"
    assert _st(teacher_dir)[0].auto_model.config.num_hidden_layers == 2
    dev = list(dict.fromkeys(t for pair in _held_out() for t in pair))
    expected = MSEEvaluator(dev, dev, teacher_model=_st(teacher_dir), name="distill-dev")(st_student)
    after = out["after"]["distill-dev_negative_mse"]
    assert after == pytest.approx(expected["distill-dev_negative_mse"], rel=1e-4, abs=1e-7)
    assert out["teacher_metrics"]["distill-dev_negative_mse"] == 0.0  # the teacher is its own target
    assert after > out["before"]["distill-dev_negative_mse"]  # the student moved towards the teacher
    # the labels came from the teacher replicas on Ray: they are the teacher's embeddings (same order)
    labels = np.array(out["train_dataset"]["label"])
    expected = out["teacher"].encode(out["train_dataset"]["sentence"])
    np.testing.assert_allclose(labels, expected, rtol=0, atol=1e-6)


@pytest.mark.ray
def test_fit_api(ray_session, tmp_path):
    import _common

    out = _run("fit_api", tmp_path)
    result = out["train_output"]
    assert result.global_step == 64 // (8 * 2)  # one DataLoader of 64 InputExamples, batch 8 per worker
    key = "eval_sts-dev_spearman_cosine"
    evals = {h["step"]: h[key] for h in result.log_history if key in h}
    assert sorted(evals) == [2, 4]  # evaluation_steps=2
    best = _st(out["model_path"])  # saved by the rank-0 worker whenever the score improved
    expected = _st_sts(_common.toy_scored(_held_out(), seed=1), name="sts-dev")(best)
    assert expected["sts-dev_spearman_cosine"] == pytest.approx(max(evals.values()), abs=1e-6)
    assert out["final"]["sts-dev_spearman_cosine"] == pytest.approx(evals[4], abs=1e-6)


@pytest.mark.ray
@pytest.mark.slow  # tune_losses --smoke-test runs a 4-trial sweep: minutes on 2 cores
@pytest.mark.parametrize("name", OPTIONAL_EXAMPLES)
def test_optional_examples_run(ray_session, tmp_path, name):
    _run(name, tmp_path)


@pytest.mark.ray
def test_quickstart_smoke(ray_session, tmp_path):
    _run("quickstart", tmp_path)
    assert (tmp_path / "final-model" / "modules.json").is_file()
