"""SoftmaxLoss: a linear classifier over (u, v, |u - v|, u * v) features of a pair (SBERT on NLI).

In: pairs ``(sentence_A, sentence_B)`` with an integer class (or a class-probability vector). Out: the
classification loss; the classifier head is trained with the model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from raystx.losses.base import ColumnContract, RaystxLoss

logger = logging.getLogger(__name__)


def _accept_old_dimension_name(init: Callable) -> Callable:
    """Let ``sentence_embedding_dimension=`` (the pre-6.x name) stand for ``embedding_dimension=``."""

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        if "sentence_embedding_dimension" in kwargs:
            if "embedding_dimension" in kwargs:
                raise TypeError("Pass only one of embedding_dimension / sentence_embedding_dimension.")
            kwargs["embedding_dimension"] = kwargs.pop("sentence_embedding_dimension")
        init(self, *args, **kwargs)

    return wrapper


class SoftmaxLoss(RaystxLoss):
    """Softmax classifier on top of the two sentence embeddings of a pair.

    The classifier input concatenates ``u, v`` (``concatenation_sent_rep``), ``|u - v|``
    (``concatenation_sent_difference``) and ``u * v`` (``concatenation_sent_multiplication``); its logits go
    to ``loss_fct``. Labels are class ids, or per-class probabilities of shape (batch, num_labels). The
    classifier (``self.classifier``) is returned by :meth:`trainable_modules` so the trainer optimises it.

    Args:
        model: the SentenceTransformer to train.
        embedding_dimension: the sentence embedding size (also accepted as ``sentence_embedding_dimension``).
        num_labels: number of classes.
        concatenation_sent_rep: include ``u`` and ``v``.
        concatenation_sent_difference: include ``|u - v|``.
        concatenation_sent_multiplication: include ``u * v``.
        loss_fct: classification loss over the logits (default ``nn.CrossEntropyLoss()``).

    Inputs:
        +--------------------------------+---------------------+
        | Texts                          | Labels              |
        +================================+=====================+
        | (sentence_A, sentence_B) pairs | class               |
        +--------------------------------+---------------------+
        | (sentence_A, sentence_B) pairs | class probabilities |
        +--------------------------------+---------------------+

    Example:
        ::

            from raystx.losses import SoftmaxLoss

            loss = SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=3)
            # dataset columns: premise, hypothesis, label (0 entailment, 1 neutral, 2 contradiction)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "int")
    alternative_contracts: ClassVar[tuple[ColumnContract, ...]] = (ColumnContract(2, 2, "vector"),)
    citation: ClassVar[str | None] = """
@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084",
}
"""

    @_accept_old_dimension_name
    def __init__(
        self,
        model: nn.Module,
        embedding_dimension: int,
        num_labels: int,
        concatenation_sent_rep: bool = True,
        concatenation_sent_difference: bool = True,
        concatenation_sent_multiplication: bool = False,
        loss_fct: Callable[[Tensor, Tensor], Tensor] = nn.CrossEntropyLoss(),  # noqa: B008 (ST default)
    ) -> None:
        super().__init__(model)
        num_vectors = (
            2 * concatenation_sent_rep + concatenation_sent_difference + concatenation_sent_multiplication
        )
        if num_vectors == 0:
            raise ValueError(
                "SoftmaxLoss needs at least one of concatenation_sent_rep, concatenation_sent_difference "
                "or concatenation_sent_multiplication."
            )
        self.embedding_dimension = embedding_dimension
        self.num_labels = num_labels
        self.concatenation_sent_rep = concatenation_sent_rep
        self.concatenation_sent_difference = concatenation_sent_difference
        self.concatenation_sent_multiplication = concatenation_sent_multiplication
        device = getattr(model, "device", None)
        self.classifier = nn.Linear(num_vectors * embedding_dimension, num_labels, device=device)
        self.loss_fct = loss_fct
        logger.info("SoftmaxLoss: %d vectors concatenated", num_vectors)

    def logits(self, rep_a: Tensor, rep_b: Tensor) -> Tensor:
        """Classifier logits (b, num_labels) for the pair embeddings ``rep_a``, ``rep_b`` (b, d)."""
        parts: list[Tensor] = []
        if self.concatenation_sent_rep:
            parts += [rep_a, rep_b]
        if self.concatenation_sent_difference:
            parts.append((rep_a - rep_b).abs())
        if self.concatenation_sent_multiplication:
            parts.append(rep_a * rep_b)
        return self.classifier(torch.cat(parts, dim=1).to(self.classifier.weight.dtype))

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d), (b, d)]; ``labels``: (b,) class ids or (b, num_labels) probabilities."""
        if labels is None:
            raise ValueError("SoftmaxLoss needs a class label (or class probabilities) per pair.")
        logits = self.logits(embeddings[0], embeddings[1])
        if self.num_labels == 1 or labels.shape != logits.shape:
            labels = labels.reshape(-1)
        return self.loss_fct(logits, labels)

    def forward(
        self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor | tuple[list[Tensor], Tensor]:
        """The loss, or ``(embeddings, logits)`` when ``labels`` is None (prediction)."""
        embeddings = self.embed(sentence_features)
        if labels is None:
            return embeddings, self.logits(embeddings[0], embeddings[1])
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_labels": self.num_labels,
            "concatenation_sent_rep": self.concatenation_sent_rep,
            "concatenation_sent_difference": self.concatenation_sent_difference,
            "concatenation_sent_multiplication": self.concatenation_sent_multiplication,
        }

    def trainable_modules(self) -> list[nn.Module]:
        return [self.classifier]
