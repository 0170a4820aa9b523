"""A minimal README.md for saved models (the full sentence-transformers-style card is generated elsewhere)."""

from __future__ import annotations

from typing import Any


def minimal_model_card(model: Any) -> str:
    """Markdown describing the architecture, embedding size, similarity and how to load the model."""
    modules = "\n".join(
        f"  ({name}): {type(m).__name__}({m.extra_repr()})" for name, m in model.named_children()
    )
    data = getattr(model, "model_card_data", None) or {}
    model_id = data.get("model_id")
    datasets = [str(d) for d in (data.get("train_datasets") or [])]
    dataset_meta = ["datasets:", *(f"- {d}" for d in datasets)] if datasets else []
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags:",
        "- sentence-transformers",
        "- feature-extraction",
        "- raystx",
        *dataset_meta,
        "---",
        "",
        f"# {data.get('model_name', 'Sentence embedding model')}",
        "",
        "Trained/saved with raystx; loads with `sentence_transformers.SentenceTransformer(path)` "
        "or `raystx.models.SentenceTransformer(path)`.",
        "",
        f"- Output dimension: {model.get_sentence_embedding_dimension()}",
        f"- Similarity function: {model.similarity_fn_name}",
        f"- Maximum sequence length: {model.max_seq_length}",
        "",
        "```",
        "SentenceTransformer(",
        modules,
        ")",
        "```",
        "",
    ]
    if datasets:
        lines += [f"Training datasets: {', '.join(datasets)}", ""]
    if model_id:
        lines += [
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{model_id}")',
            "```",
            "",
        ]
    return "\n".join(lines)
