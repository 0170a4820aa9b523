"""AnglELoss: CoSENT ranking with the AnglE (angle-difference) pairwise similarity.

In: pairs ``(sentence_A, sentence_B)`` with a float label, or ``(anchor, positive, negative_1, ...)``
tuples without label (positive pairs get label 1, negative pairs 0). Out: a scalar loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from raystx.losses.base import ColumnContract
from raystx.losses.cosent import CoSENTLoss


def pairwise_angle_sim(x: Tensor, y: Tensor) -> Tensor:
    """AnglE similarity of matching rows of two (n, d) tensors, returned as (n,).

    After L2 normalisation, each row is read as a complex vector whose real part is the first half of the
    dimensions and whose imaginary part is the second half (an odd dimension is zero-padded). The score is
    ``|cosine + sine|`` with ``cosine = <x, y>`` and ``sine = sum(x_im * y_re - x_re * y_im)``, as in the AnglE
    reference implementation.
    """
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() == 1:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if not torch.is_floating_point(x):
        x, y = x.float(), y.float()
    if x.shape[-1] % 2:
        x = nn.functional.pad(x, (0, 1))
        y = nn.functional.pad(y, (0, 1))
    x = nn.functional.normalize(x, p=2, dim=-1)
    y = nn.functional.normalize(y, p=2, dim=-1)
    half = x.shape[-1] // 2
    x_re, x_im = x[..., :half], x[..., half:]
    y_re, y_im = y[..., :half], y[..., half:]
    cosine = (x_re * y_re + x_im * y_im).sum(dim=-1)
    sine = (x_im * y_re - x_re * y_im).sum(dim=-1)
    return (cosine + sine).abs()


class AnglELoss(CoSENTLoss):
    """AnglE (Angle-optimized) loss: :class:`CoSENTLoss` with ``pairwise_angle_sim`` as the similarity.

    The cosine's gradient vanishes near +-1; AnglE ranks angle differences in complex space instead. With
    three or more columns ``(anchor, positive, negative_1, ..., negative_n)`` every (anchor, positive) pair
    gets label 1 (or the given label) and every (anchor, negative_i) pair label 0 (or ``1 - label``), and the
    pairs are ranked with CoSENT. Pairs from all workers are ranked together when ``gather_across_devices``.

    Args:
        model: the SentenceTransformer to train.
        scale: multiplies the similarity scores (inverse temperature).
        gather_across_devices: rank the pairs of the global batch instead of the local one.

    Inputs:
        +-------------------------------------------------+------------------------+
        | Texts                                           | Labels                 |
        +=================================================+========================+
        | (sentence_A, sentence_B) pairs                  | float similarity score |
        +-------------------------------------------------+------------------------+
        | (anchor, positive, negative) triplets           | none                   |
        +-------------------------------------------------+------------------------+
        | (anchor, positive, negative_1, ..., negative_n) | none                   |
        +-------------------------------------------------+------------------------+

    Example:
        ::

            from raystx.losses import AnglELoss

            loss = AnglELoss(model)  # dataset columns: sentence1, sentence2, score
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "float")
    alternative_contracts: ClassVar[tuple[ColumnContract, ...]] = (ColumnContract(3, None, "none"),)
    citation: ClassVar[str | None] = """
@inproceedings{li-li-2024-aoe,
    title = "{A}o{E}: Angle-optimized Embeddings for Semantic Textual Similarity",
    author = "Li, Xianming and Li, Jing",
    year = "2024",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2024.acl-long.101/",
    doi = "10.18653/v1/2024.acl-long.101"
}
"""

    def __init__(self, model: nn.Module, scale: float = 20.0, gather_across_devices: bool = True) -> None:
        super().__init__(
            model, scale=scale, similarity_fct=pairwise_angle_sim, gather_across_devices=gather_across_devices
        )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: two columns (labels required) or 3+ columns (labels optional). Returns a scalar."""
        if len(embeddings) <= 2:
            if labels is None:
                raise ValueError("AnglELoss needs a float label per pair when the dataset has two columns.")
            return super().compute_loss_from_embeddings(embeddings, labels)
        anchor, others = embeddings[0], embeddings[1:]
        if labels is None:
            labels = anchor.new_ones(anchor.shape[0])
        elif labels.numel() != anchor.shape[0]:
            raise ValueError(
                f"AnglELoss expects one label per row ({anchor.shape[0]}), got shape {tuple(labels.shape)}."
            )
        labels = labels.reshape(-1)
        num_negatives = len(others) - 1
        pair_labels = torch.cat([labels] + [1 - labels] * num_negatives)
        left = anchor.repeat(len(others), 1)
        right = torch.cat(others, dim=0)
        return super().compute_loss_from_embeddings([left, right], pair_labels)
