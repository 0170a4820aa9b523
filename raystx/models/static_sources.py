"""Ways to build a StaticEmbedding from elsewhere: a model2vec model, or by distilling an encoder.

``from_model2vec(path)`` reads a ``model2vec.StaticModel`` (needs the ``model2vec`` package, extra
``raystx[model2vec]``) and folds its token mapping and per-token weights into one row per token id.

``from_distillation(model)`` builds the table in raystx itself, model2vec-style: every token of the encoder's
vocabulary is embedded on its own (``[CLS] token [SEP]``, mean over those positions, i.e. the encoder's
attention mask), optionally reduced by PCA (``pca_dims``) and weighted by SIF over a Zipf prior on the token
rank (``sif_coefficient / (sif_coefficient + p(rank))``, ``p(rank)`` proportional to ``1 / (rank + 2)``).
raystx does not call ``model2vec.distill``: its ``distill`` extra pins ``transformers<5.4``, which conflicts with
raystx's transformers, and would download models by name. The result is a StaticEmbedding with the encoder's
tokenizer.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch


def fold_model2vec(
    embeddings: Any, token_mapping: Any | None = None, token_weights: Any | None = None
) -> torch.Tensor:
    """One row per token id: ``embeddings[token_mapping[id]] * token_weights[id]`` (either part optional)."""
    matrix = _tensor(embeddings).float()
    if token_mapping is not None:
        matrix = matrix[_tensor(token_mapping).long()]
    if token_weights is not None:
        matrix = matrix * _tensor(token_weights).float()[:, None]
    return matrix.contiguous()


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def from_model2vec(cls: type, model_id_or_path: str) -> Any:
    """A ``cls`` (StaticEmbedding) from a model2vec model directory (or Hub id, which needs network access)."""
    try:
        from model2vec import StaticModel
    except ImportError:
        raise ImportError(
            "StaticEmbedding.from_model2vec needs the model2vec package: pip install 'raystx[model2vec]'"
        ) from None
    static = StaticModel.from_pretrained(model_id_or_path)
    embedding = static.embedding
    if isinstance(embedding, torch.nn.Module):  # some model2vec versions hold an nn.Embedding
        matrix = embedding.weight.detach().float()
    else:
        matrix = fold_model2vec(
            embedding, getattr(static, "token_mapping", None), getattr(static, "weights", None)
        )
    return cls(static.tokenizer, embedding_weights=matrix, base_model=str(model_id_or_path))


def _pca(matrix: np.ndarray, dims: int | None) -> np.ndarray:
    """Project the centred rows onto their first ``dims`` principal axes (all axes when ``dims`` is None)."""
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    keep = vt if dims is None else vt[:dims]
    return centred @ keep.T


def _token_embeddings(encoder: Any, ids: list[int], batch_size: int, device: str | None) -> np.ndarray:
    """Mean-pooled encoder output of ``[CLS] token [SEP]`` for each token id."""
    from raystx.models.pooling import Pooling

    hf_tok = encoder.tokenizer
    first, last = hf_tok.cls_token_id, hf_tok.sep_token_id
    if first is None:
        first = hf_tok.bos_token_id
    if last is None:
        last = hf_tok.eos_token_id
    pool = Pooling(encoder.get_word_embedding_dimension(), "mean")
    run_device = torch.device(device) if device else next(encoder.parameters()).device
    encoder.to(run_device)
    rows = []
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                chunk = ids[start : start + batch_size]
                seq = [[t] for t in chunk]
                seq = [
                    ([first] if first is not None else []) + s + ([last] if last is not None else [])
                    for s in seq
                ]
                input_ids = torch.tensor(seq, dtype=torch.long, device=run_device)
                features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
                if "token_type_ids" in hf_tok.model_input_names:
                    features["token_type_ids"] = torch.zeros_like(input_ids)
                rows.append(pool(encoder(features))["sentence_embedding"].float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(rows)


def from_distillation(
    cls: type,
    model_name: str,
    vocabulary: list[str] | None = None,
    device: str | None = None,
    pca_dims: int | None = 256,
    apply_zipf: bool | None = None,
    sif_coefficient: float | None = 1e-4,
    token_remove_pattern: str | None = r"\[unused\d+\]",
    quantize_to: str = "float32",
    use_subword: bool = True,
    batch_size: int = 256,
    **kwargs: Any,
) -> Any:
    """Distil the encoder at ``model_name`` (a local or Hub model, loaded with raystx) into a ``cls``.

    ``pca_dims`` larger than the encoder width keeps the width (PCA still rotates). Tokens matching
    ``token_remove_pattern`` get an all-zero row. ``apply_zipf=False`` turns SIF weighting off, as does
    ``sif_coefficient=None``. A custom ``vocabulary`` and ``use_subword=False`` are not supported.
    """
    if vocabulary is not None or not use_subword:
        raise ValueError(
            "StaticEmbedding.from_distillation in raystx distils the encoder's own subword vocabulary; "
            "vocabulary=... and use_subword=False are not supported"
        )
    if quantize_to not in ("float32", "float16", "float64"):
        raise ValueError(f"quantize_to must be float32, float16 or float64 for raystx, got {quantize_to!r}")
    from raystx.models.sentence_transformer import SentenceTransformer
    from raystx.models.transformer import Transformer

    encoder = SentenceTransformer(model_name, device=device or "cpu")[0]
    if not isinstance(encoder, Transformer):
        raise ValueError(
            f"from_distillation needs a Transformer encoder; {model_name!r} starts with {encoder!r}"
        )
    backend = encoder.tokenizer.backend_tokenizer
    size = backend.get_vocab_size()
    matrix = _token_embeddings(encoder, list(range(size)), batch_size, device)
    if pca_dims is not None:
        matrix = _pca(matrix, min(pca_dims, matrix.shape[1]))
    if sif_coefficient is not None and apply_zipf is not False:
        rank = np.arange(size, dtype=np.float64)
        prior = 1.0 / (rank + 2)
        prior /= prior.sum()
        matrix = matrix * (sif_coefficient / (sif_coefficient + prior))[:, None]
    if token_remove_pattern:
        pattern = re.compile(token_remove_pattern)
        removed = [i for token, i in backend.get_vocab().items() if pattern.fullmatch(token)]
        matrix[removed] = 0.0
    weights = torch.from_numpy(np.ascontiguousarray(matrix)).to(getattr(torch, quantize_to)).float()
    return cls(backend, embedding_weights=weights, base_model=model_name)
