"""NanoBEIREvaluator on locally written BEIR-format sets, compared with sentence-transformers' NanoBEIREvaluator
reading the same data (its Hub loader replaced by an in-memory ``datasets.Dataset`` of the same rows)."""

from __future__ import annotations

import json

import pytest
from eval_helpers import assert_same_metrics, make_ir_data, st_model, write_beir_dir  # noqa: F401

from raystx.evaluation import InformationRetrievalEvaluator, NanoBEIREvaluator
from raystx.evaluation._beir import load_beir_dir

SPLIT_DIRS = {"NanoSciFact": "NanoSciFact", "NanoNFCorpus": "nfcorpus"}


@pytest.fixture(scope="module")
def beir_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nanobeir")
    write_beir_dir(root / "NanoSciFact", *make_ir_data(n_docs=50, n_queries=10, seed=0))
    write_beir_dir(root / "nfcorpus", *make_ir_data(n_docs=40, n_queries=8, seed=5))
    return root


def _st_evaluator(root, **kwargs):
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.evaluation import NanoBEIREvaluator as STNano

    class LocalSTNano(STNano):
        def _load_dataset_subset_split(self, subset, split, required_columns):
            directory = root / SPLIT_DIRS[split]
            if subset == "qrels":
                lines = (directory / "qrels" / "test.tsv").read_text().splitlines()[1:]
                rows = [dict(zip(["query-id", "corpus-id"], line.split("\t")[:2])) for line in lines]
            else:
                rows = [json.loads(line) for line in (directory / f"{subset}.jsonl").read_text().splitlines()]
                rows = [
                    {"_id": r["_id"], "text": (r.get("title", "") + " " + r["text"]).strip()} for r in rows
                ]
            return Dataset.from_list(rows)

    return LocalSTNano(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dataset_names": ["scifact", "nfcorpus"]},
        {"dataset_names": ["nfcorpus"], "ndcg_at_k": [5, 10], "map_at_k": [20], "aggregate_key": "avg"},
        {
            "dataset_names": ["scifact", "nfcorpus"],
            "truncate_dim": 16,
            "query_prompts": "query: ",
            "corpus_prompts": {"scifact": "doc: ", "nfcorpus": "passage: "},
        },
    ],
)
def test_parity_with_sentence_transformers(st_model, beir_root, kwargs, tmp_path):  # noqa: F811
    ours = NanoBEIREvaluator(dataset_id=str(beir_root), **kwargs)
    theirs = _st_evaluator(beir_root, **kwargs)
    got = ours(st_model, output_path=str(tmp_path / "a"))
    want = theirs(st_model, output_path=str(tmp_path / "b"))
    assert_same_metrics(got, want)
    assert ours.primary_metric == theirs.primary_metric and ours.primary_metric in got
    a = (tmp_path / "a" / ours.csv_file).read_text().splitlines()
    b = (tmp_path / "b" / theirs.csv_file).read_text().splitlines()
    assert a[0] == b[0]
    assert [round(float(x), 9) for x in a[1].split(",")] == [round(float(x), 9) for x in b[1].split(",")]


def test_single_beir_dir_with_custom_name_equals_ir_evaluator(st_model, tmp_path):  # noqa: F811
    queries, corpus, relevant = make_ir_data(seed=9)
    directory = write_beir_dir(tmp_path / "mydata", queries, corpus, relevant)
    nano = NanoBEIREvaluator(dataset_names=["mydata"], dataset_id=str(directory))
    got = nano(st_model)
    direct = InformationRetrievalEvaluator(queries, corpus, relevant, name="mydata")(st_model)
    for key, value in direct.items():
        assert got[key] == value
        assert got["NanoBEIR_mean_" + key[len("mydata_") :]] == pytest.approx(value, abs=1e-12)
    assert nano.primary_metric == "NanoBEIR_mean_cosine_ndcg@10"


def test_beir_reader_titles_scores_and_unknown_names(tmp_path):
    d = tmp_path / "set"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(
        json.dumps({"_id": "a", "title": "Title", "text": "body"})
        + "\n"
        + json.dumps({"_id": "b", "text": ""})
        + "\n"
    )
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "x"}) + "\n")
    (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t2\nq\tb\t0\n")
    queries, corpus, relevant = load_beir_dir(d)
    assert corpus == {"a": "Title body"} and queries == {"q": "x"} and relevant == {"q": {"a"}}
    with pytest.raises(ValueError, match="not valid NanoBEIR"):
        NanoBEIREvaluator(dataset_names=["nope"], dataset_id=str(tmp_path))
    with pytest.raises(ValueError, match="cannot be empty"):
        NanoBEIREvaluator(dataset_names=[], dataset_id=str(tmp_path))
