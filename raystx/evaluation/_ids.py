"""Checks of the ids given to the retrieval evaluators, at construction (before any encoding).

``check_retrieval_ids(queries, corpus, relevant_docs, name)``:

* ``relevant_docs`` values must be collections of corpus ids (a plain string would be read letter by letter):
  ``ValueError``;
* no query left to evaluate (every qrels query id unknown, or no query with a relevant document): ``ValueError``
  naming the counts, examples and, when the ids differ only in type (``1`` vs ``"1"``), that cause;
* some qrels query ids unknown, or relevant document ids missing from the corpus: ``RetrievalIdWarning`` with
  counts and examples (BEIR readers drop empty queries/documents but keep their qrels, so these occur in real
  sets; sentence-transformers ignores them silently). Queries without relevant documents are skipped, as in
  sentence-transformers (BEIR query files hold the queries of every split).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping
from typing import Any


class RetrievalIdWarning(UserWarning):
    """Ids in the relevance judgements (qrels) that the queries or the corpus do not have."""


def _examples(ids: Iterable[Any], limit: int = 3) -> str:
    shown = sorted(ids, key=str)[:limit]
    return ", ".join(repr(i) for i in shown)


def _type_hint(unknown: Collection[Any], known: Collection[Any]) -> str:
    known_text = {str(k) for k in known}
    if unknown and all(str(u) in known_text for u in list(unknown)[:100]):
        kinds = sorted({type(next(iter(unknown))).__name__, type(next(iter(known))).__name__})
        return f" (the ids differ only in type, {' vs '.join(kinds)}: convert both to str)"
    return ""


def check_retrieval_ids(
    queries: Mapping[Any, str],
    corpus: Mapping[Any, str],
    relevant_docs: Mapping[Any, Collection[Any]],
    name: str = "",
) -> None:
    """Raise ``ValueError`` or warn ``RetrievalIdWarning`` as described in the module docstring."""
    where = f"InformationRetrievalEvaluator{f' {name!r}' if name else ''}"
    strings = [qid for qid, docs in relevant_docs.items() if isinstance(docs, (str, bytes))]
    if strings:
        raise ValueError(
            f"{where}: relevant_docs maps query ids to single strings (e.g. {strings[0]!r}: "
            f"{relevant_docs[strings[0]]!r}); give a set of corpus ids per query, e.g. {{{strings[0]!r}: "
            f"{{{relevant_docs[strings[0]]!r}}}}}"
        )
    judged = [qid for qid, docs in relevant_docs.items() if len(docs) > 0]
    unknown_queries = [qid for qid in judged if qid not in queries]
    evaluable = [qid for qid in queries if len(relevant_docs.get(qid, ())) > 0]
    if not evaluable:
        if judged:
            reason = (
                f"none of the {len(judged)} query ids in relevant_docs (e.g. {_examples(unknown_queries)}) is "
                f"among the {len(queries)} queries (e.g. {_examples(queries)})"
                f"{_type_hint(unknown_queries, queries)}"
            )
        else:
            reason = f"relevant_docs ({len(relevant_docs)} entries) names no relevant document for any query"
        raise ValueError(
            f"{where} has no query to evaluate: {reason}; relevant_docs must map the ids of `queries` to sets "
            "of ids of `corpus`"
        )
    if unknown_queries:
        warnings.warn(
            RetrievalIdWarning(
                f"{where}: {len(unknown_queries)} of {len(judged)} query ids in relevant_docs are not among the "
                f"queries (e.g. {_examples(unknown_queries)}); they are not evaluated"
            ),
            stacklevel=3,
        )
    relevant_ids = {cid for qid in evaluable for cid in relevant_docs[qid]}
    unknown_docs = [cid for cid in relevant_ids if cid not in corpus]
    if unknown_docs:
        affected = sum(1 for qid in evaluable if any(cid not in corpus for cid in relevant_docs[qid]))
        warnings.warn(
            RetrievalIdWarning(
                f"{where}: {len(unknown_docs)} of {len(relevant_ids)} relevant document ids are not in the corpus "
                f"(e.g. {_examples(unknown_docs)}), affecting {affected} of {len(evaluable)} queries"
                f"{_type_hint(unknown_docs, corpus)}; they can never be retrieved, so recall, nDCG and MAP of "
                "those queries stay below 1: add the documents to the corpus or drop them from relevant_docs"
            ),
            stacklevel=3,
        )
