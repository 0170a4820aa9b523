"""The data seams: one label-column rule, one loss/dataset pairing check, and the DataSource / Evaluator
protocols that the sources and evaluators implement."""

from __future__ import annotations

import datasets

from raystx.data.memory import InMemorySource
from raystx.data.names import LABEL_COLUMNS, split_label_column
from raystx.data.pairing import pairing_problems, unpaired
from raystx.data.protocol import DataSource, PeekableSource
from raystx.data.sources import prepare_sources
from raystx.evaluation import EmbeddingSimilarityEvaluator, SequentialEvaluator
from raystx.evaluation.protocol import Evaluator


def test_split_label_column_takes_the_first_label_named_column():
    assert split_label_column(["a", "score", "b"]) == (["a", "b"], "score")
    assert split_label_column(["a", "b"]) == (["a", "b"], None)
    assert split_label_column(["labels", "q", "label"]) == (["q"], "labels")
    assert all(split_label_column([c])[1] == c for c in LABEL_COLUMNS)
    source = InMemorySource({"q": ["x"], "label": [1], "p": ["y"]})
    assert (source.input_columns, source.label_column) == (["q", "p"], "label")


def test_pairing_problems_name_unknown_and_missing_datasets_in_order():
    assert pairing_problems(["a", "b"], ["b", "a"]) == []
    assert unpaired(["c", "a", "z"], ["a", "b"]) == (["c", "z"], ["b"])
    assert pairing_problems(["a", "c"], ["a", "b"], what="`losses`") == [
        "`losses` names dataset(s) ['c'], which are not among the datasets ['a', 'b']",
        "dataset 'b' has no loss: `losses` covers ['a', 'c']; add a loss for 'b' or drop the dataset",
    ]


def test_sources_and_evaluators_implement_the_protocols(tmp_path):
    (source,) = prepare_sources(
        datasets.Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]}),
        staging_dir=str(tmp_path),
        name="train",
    ).values()
    assert isinstance(source, PeekableSource) and isinstance(source, DataSource)
    assert isinstance(InMemorySource({"q": ["x"]}), DataSource)
    assert not isinstance(InMemorySource({"q": ["x"]}), PeekableSource)  # no driver-side peek
    table = source.open()
    assert table[[1]] == {"anchor": ["b"], "positive": ["d"]} and len(table) == 2

    similarity = EmbeddingSimilarityEvaluator(["a"], ["b"], [0.5], name="dev")
    assert isinstance(similarity, Evaluator)
    assert isinstance(SequentialEvaluator([similarity]), Evaluator)
    assert not isinstance(object(), Evaluator)
