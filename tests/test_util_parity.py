"""raystx.util search helpers, readers and v2 datasets against sentence-transformers on the same inputs."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest
import torch
from sentence_transformers import util as st_util
from sentence_transformers.sentence_transformer import readers as st_readers

from raystx import util
from raystx.data import legacy_readers
from raystx.data.input_example import InputExample
from raystx.data.legacy_datasets import (
    DenoisingAutoEncoderDataset,
    ParallelSentencesDataset,
    SentenceLabelDataset,
    SentencesDataset,
)


@pytest.fixture
def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(37, 16, generator=g), torch.randn(203, 16, generator=g)


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
@pytest.mark.parametrize("chunks", [(100, 500000), (7, 50)])
def test_semantic_search_matches_oracle(embeddings, score, chunks) -> None:
    queries, corpus = embeddings
    kwargs = dict(query_chunk_size=chunks[0], corpus_chunk_size=chunks[1], top_k=12)
    ours = util.semantic_search(queries, corpus, score_function=getattr(util, score), **kwargs)
    ref = st_util.semantic_search(queries, corpus, score_function=getattr(st_util, score), **kwargs)
    assert [[h["corpus_id"] for h in row] for row in ours] == [[h["corpus_id"] for h in row] for row in ref]
    np.testing.assert_allclose(
        [[h["score"] for h in row] for row in ours], [[h["score"] for h in row] for row in ref], atol=1e-6
    )
    assert util.information_retrieval(queries, corpus, **kwargs) == util.semantic_search(
        queries, corpus, **kwargs
    )


@pytest.mark.parametrize("max_pairs,top_k,chunks", [(500000, 100, (5000, 100000)), (40, 3, (9, 25))])
def test_paraphrase_mining_embeddings_matches_oracle(embeddings, max_pairs, top_k, chunks) -> None:
    data = embeddings[1][:80]
    kwargs = dict(max_pairs=max_pairs, top_k=top_k, query_chunk_size=chunks[0], corpus_chunk_size=chunks[1])
    ours = util.paraphrase_mining_embeddings(data, **kwargs)
    ref = st_util.paraphrase_mining_embeddings(data, **kwargs)
    assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in ref]
    np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in ref], atol=1e-6)


def test_paraphrase_mining_encodes_with_the_model(tiny_bert_dir) -> None:
    import sentence_transformers

    from raystx import SentenceTransformer
    from raystx.testing import unique_sentences

    sentences = unique_sentences(30, seed=3)
    ours = util.paraphrase_mining(SentenceTransformer(str(tiny_bert_dir), device="cpu"), sentences, top_k=4)
    ref = st_util.paraphrase_mining(
        sentence_transformers.SentenceTransformer(str(tiny_bert_dir), device="cpu"), sentences, top_k=4
    )
    assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in ref]
    np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in ref], atol=1e-5)


def test_community_detection_matches_oracle() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 24, generator=g)
    points = torch.cat([c + 0.3 * torch.randn(12 + 3 * i, 24, generator=g) for i, c in enumerate(centres)])
    points = points[torch.randperm(len(points), generator=g)]
    for threshold, size in ((0.8, 5), (0.9, 3), (0.5, 10)):
        ours = util.community_detection(points, threshold=threshold, min_community_size=size, batch_size=16)
        ref = st_util.community_detection(points, threshold=threshold, min_community_size=size, batch_size=16)
        assert [c[0] for c in ours] == [c[0] for c in ref]
        assert [sorted(c) for c in ours] == [sorted(c) for c in ref]
    assert util.community_detection(points[:3], min_community_size=10) == []


def test_small_helpers_match_oracle(embeddings) -> None:
    a, b = embeddings[0][:9], embeddings[1][:9]
    torch.testing.assert_close(util.pytorch_cos_sim(a, b), st_util.pytorch_cos_sim(a, b))
    torch.testing.assert_close(
        util.pairwise_angle_sim(a, b), st_util.pairwise_angle_sim(a, b), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(util.truncate_embeddings(a, 5), st_util.truncate_embeddings(a, 5))
    np.testing.assert_array_equal(
        util.truncate_embeddings(a.numpy(), 4), st_util.truncate_embeddings(a.numpy(), 4)
    )
    assert util.fullname(InputExample()) == "raystx.data.input_example.InputExample"
    assert util.import_from_string("raystx.util.cos_sim") is util.cos_sim
    with pytest.raises(ImportError, match="no attribute 'nope'"):
        util.import_from_string("raystx.util.nope")
    assert util.SimilarityFunction("cosine").value == "cosine"
    assert util.get_rank() == 0 and util.get_world_size() == 1 and not util.is_dist_initialized()


def test_logging_handler_writes_through_tqdm(capsys) -> None:
    from raystx import LoggingHandler

    logger = logging.getLogger("raystx-test-handler")
    handler = LoggingHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("hello %s", "world")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().out == "INFO|hello world\n"


# ------------------------------------------------------------------------------------------ readers
def _same_examples(ours: list, ref: list) -> None:
    assert [(e.guid, list(e.texts), e.label) for e in ours] == [(e.guid, list(e.texts), e.label) for e in ref]


def test_readers_match_oracle(tmp_path) -> None:
    (tmp_path / "sts.tsv").write_text("a one\tb one\t2.5\na two\tb two\t5\n", encoding="utf-8")
    with gzip.open(tmp_path / "sts.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("x\ty\t1\n")
    bench = "g\tf\ty\tid\t4.0\tfirst s\tsecond s\n"
    (tmp_path / "bench.tsv").write_text(bench, encoding="utf-8")
    for name in ("sts.tsv", "sts.tsv.gz"):
        for kwargs in ({}, {"normalize_scores": False}):
            _same_examples(
                legacy_readers.STSDataReader(str(tmp_path), **kwargs).get_examples(name),
                st_readers.STSDataReader(str(tmp_path), **kwargs).get_examples(name),
            )
    _same_examples(
        legacy_readers.STSBenchmarkDataReader(str(tmp_path)).get_examples("bench.tsv"),
        st_readers.STSBenchmarkDataReader(str(tmp_path)).get_examples("bench.tsv"),
    )
    for prefix, lines in (
        ("s1", "p\nq\nr\n"),
        ("s2", "P\nQ\nR\n"),
        ("labels", "entailment\nNeutral\ncontradiction\n"),
    ):
        with gzip.open(tmp_path / f"{prefix}.train.gz", "wt", encoding="utf-8") as f:
            f.write(lines)
    for max_examples in (0, 2):
        _same_examples(
            legacy_readers.NLIDataReader(str(tmp_path)).get_examples("train.gz", max_examples),
            st_readers.NLIDataReader(str(tmp_path)).get_examples("train.gz", max_examples),
        )
    (tmp_path / "labels.tsv").write_text("cat\tmeow\ndog\twoof\ncat\tpurr\n", encoding="utf-8")
    _same_examples(
        legacy_readers.LabelSentenceReader(str(tmp_path)).get_examples("labels.tsv"),
        st_readers.LabelSentenceReader(str(tmp_path)).get_examples("labels.tsv"),
    )
    (tmp_path / "en.txt").write_text("hello\nworld\nextra\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("hallo\nwelt\n", encoding="utf-8")
    files = [str(tmp_path / "en.txt"), str(tmp_path / "de.txt")]
    _same_examples(
        legacy_readers.PairedFilesReader(files).get_examples(),
        st_readers.PairedFilesReader(files).get_examples(),
    )
    (tmp_path / "triplets.tsv").write_text("h1\th2\th3\na\tp\tn\nb\tq\tm\n", encoding="utf-8")
    for kwargs in ({}, {"has_header": True}):
        _same_examples(
            legacy_readers.TripletReader(str(tmp_path), **kwargs).get_examples("triplets.tsv", 1),
            st_readers.TripletReader(str(tmp_path), **kwargs).get_examples("triplets.tsv", 1),
        )


# ------------------------------------------------------------------------------------------ datasets
def test_sentences_and_denoising_datasets() -> None:
    examples = [InputExample(texts=["a", "b"], label=1.0), InputExample(texts=["c", "d"], label=0.0)]
    dataset = SentencesDataset(examples, model=None)
    assert len(dataset) == 2 and dataset[1] is examples[1]

    np.random.seed(0)
    sentence = "the quick brown fox jumps over the lazy dog today"
    noisy = DenoisingAutoEncoderDataset([sentence])
    for _ in range(20):
        damaged, original = noisy[0].texts
        assert original == sentence
        words = damaged.split()
        assert 1 <= len(words) <= 10
        it = iter(sentence.split())
        assert all(any(w == x for x in it) for w in words)  # kept words in their original order
    assert DenoisingAutoEncoderDataset(["x y"], noise_fn=str.upper)[0].texts == ["X Y", "x y"]


def test_sentence_label_dataset_yields_label_runs() -> None:
    np.random.seed(0)
    examples = [InputExample(texts=[f"t{i}"], label=i % 4) for i in range(22)] + [
        InputExample(texts=["lone"], label=9)
    ]
    dataset = SentenceLabelDataset(examples, samples_per_label=2)
    assert len(dataset) == 22  # the label with one example is dropped
    drawn = list(dataset)
    assert len(drawn) == 22
    for start in range(0, 22, 2):
        assert drawn[start].label == drawn[start + 1].label
        assert drawn[start] is not drawn[start + 1]
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=4, collate_fn=lambda b: b)
    assert sum(len(b) for b in loader) == 22


def test_parallel_sentences_dataset_labels_are_teacher_embeddings(tmp_path) -> None:
    class Teacher:
        calls = 0

        def encode(self, sentences, batch_size=32, convert_to_numpy=True, **kwargs):
            Teacher.calls += 1
            return np.array([[len(s), s.count("o")] for s in sentences], dtype=np.float32)

    (tmp_path / "en-de.tsv").write_text("hello world\thallo welt\nsecond one\tzweiter\n", encoding="utf-8")
    dataset = ParallelSentencesDataset(student_model=None, teacher_model=Teacher(), batch_size=4)
    dataset.load_data(str(tmp_path / "en-de.tsv"), weight=2)
    assert len(dataset) == 4
    sources = {"hello world": [11, 2], "hallo welt": [11, 2], "second one": [10, 2], "zweiter": [10, 2]}
    seen = [dataset[i] for i in range(8)]
    for example in seen:
        np.testing.assert_array_equal(example.label, sources[example.texts[0]])
    assert {e.texts[0] for e in seen} == set(sources)
    assert Teacher.calls == 1  # embeddings cached across rounds


def test_fit_accepts_the_v2_datasets(tiny_bert_dir) -> None:
    from torch.utils.data import DataLoader

    from raystx import SentenceTransformer
    from raystx.losses import BatchHardTripletLoss, CosineSimilarityLoss, MSELoss
    from raystx.train.fit import prepare_fit

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    labelled = [InputExample(texts=[f"s{i}"], label=i % 3) for i in range(12)]
    pairs = [InputExample(texts=[f"a{i}", f"b{i}"], label=i / 10) for i in range(10)]

    class Teacher:
        def encode(self, sentences, **kwargs):
            return np.stack([np.full(32, len(s), dtype=np.float32) for s in sentences])

    parallel = ParallelSentencesDataset(model, Teacher())
    parallel.add_dataset([["hello", "hallo"], ["world", "welt"]], weight=1)
    objectives = [
        (DataLoader(SentencesDataset(pairs, model), batch_size=4, shuffle=True), CosineSimilarityLoss(model)),
        (DataLoader(parallel, batch_size=2), MSELoss(model)),
    ]
    plan = prepare_fit(model, objectives, epochs=1)
    pair_data, parallel_data = plan.datasets.values()
    assert sorted(pair_data["sentence_0"]) == sorted(f"a{i}" for i in range(10))
    assert sorted(parallel_data["sentence_0"]) == ["hallo", "hello", "welt", "world"]
    for label in parallel_data["label"]:
        assert label == [5.0] * 32  # the teacher embedding of the source sentence ("hello"/"world")

    plan = prepare_fit(
        model, [(DataLoader(SentenceLabelDataset(labelled), batch_size=4), BatchHardTripletLoss(model))]
    )
    assert plan.args.batch_sampler.value == "group_by_label"
    (label_data,) = plan.datasets.values()
    assert sorted(label_data["label"]) == sorted(e.label for e in labelled)
