"""Semantic search: embed a corpus once, then find the top-k most similar entries for each query (cosine).

Works with any saved model: the all-MiniLM-L6-v2 package model by default, or ``--model PATH`` (e.g. the
``final`` folder written by ``train_triplets.py``). The corpus is the questions of the Quora duplicate-question
pairs; the default queries are questions whose known duplicate is in the corpus, so the script also prints
recall@k (how often the duplicate is among the top k). No Ray needed: encoding runs in this process.

    python examples/semantic_search.py --smoke-test                     # tiny random model, toy corpus (seconds)
    python examples/semantic_search.py                                  # MiniLM, 5000 Quora questions
    python examples/semantic_search.py --model /tmp/run/final --query "How do I learn Python?" --top-k 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import base_parser, minilm_dir, output_dir, read_tsv, tiny_model_dir


def search(query_embeddings: Any, corpus_embeddings: Any, top_k: int) -> list[list[tuple[int, float]]]:
    """For each query, the ``top_k`` (corpus index, cosine similarity) pairs, best first."""
    import torch

    from raystx.util import cos_sim

    scores = cos_sim(query_embeddings, corpus_embeddings)
    values, indices = torch.topk(scores, k=min(top_k, scores.shape[1]), dim=1)
    return [
        [(int(i), float(v)) for i, v in zip(row_idx, row_val)]
        for row_idx, row_val in zip(indices.tolist(), values.tolist())
    ]


def load_corpus(args: Any) -> tuple[list[str], list[str], list[int | None]]:
    """(corpus, queries, index in the corpus of each query's known match or None)."""
    if args.smoke_test:
        from toy_data import make_pairs

        train, held_out = make_pairs(seed=0)
        pairs = train + held_out
        corpus = list(dict.fromkeys(p for _, p in pairs))
        queries = [q for q, _ in held_out[:5]]
        return corpus, queries, [corpus.index(p) for _, p in held_out[:5]]
    rows = read_tsv(args.data_dir / "quora" / "qqp_pairs.tsv")
    corpus: dict[str, int] = {}
    duplicates = []
    for q1, q2, dup in zip(rows["question1"], rows["question2"], rows["is_duplicate"]):
        if len(corpus) >= args.corpus_size:
            break
        for q in (q1, q2):
            corpus.setdefault(q, len(corpus))
        if dup == "1":
            duplicates.append((q1, q2))
    chosen = duplicates[: args.num_queries]
    # a query is not its own answer: it is searched for in the corpus without itself
    texts = [t for t in corpus if t not in {q for q, _ in chosen}]
    position = {t: i for i, t in enumerate(texts)}
    return texts, [q for q, _ in chosen], [position.get(d) for _, d in chosen]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the corpus, the queries and each query's hits."""
    parser = base_parser(__doc__)
    parser.add_argument("--model", default=None, help="a saved model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--query", action="append", default=None, help="a query (repeatable)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--corpus-size", type=int, default=5000)
    parser.add_argument("--num-queries", type=int, default=200)
    args = parser.parse_args(argv)

    from raystx import SentenceTransformer

    if args.model:
        model_path = Path(args.model)
    elif args.smoke_test:
        model_path = tiny_model_dir(output_dir(args, "semantic-search") / "tiny-bert")
    else:
        model_path = minilm_dir()
    model = SentenceTransformer(str(model_path), device="cpu")

    corpus, queries, answers = load_corpus(args)
    if args.query:
        queries, answers = list(args.query), [None] * len(args.query)
    corpus_embeddings = model.encode(corpus, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    query_embeddings = model.encode(queries, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    hits = search(query_embeddings, corpus_embeddings, args.top_k)

    for query, row in list(zip(queries, hits))[:5]:
        print(f"\nquery: {query}")
        for index, score in row:
            print(f"  {score:.4f}  {corpus[index]}")
    known = [(a, [i for i, _ in row]) for a, row in zip(answers, hits) if a is not None]
    recall = sum(a in found for a, found in known) / len(known) if known else None
    if recall is not None:
        print(f"\nrecall@{args.top_k} over {len(known)} queries with a known match: {recall:.4f}")
    return {
        "corpus": corpus,
        "queries": queries,
        "hits": hits,
        "recall_at_k": recall,
        "model_path": str(model_path),
    }


if __name__ == "__main__":
    main()
