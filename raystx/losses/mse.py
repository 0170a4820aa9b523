"""MSELoss: mean squared error between student embeddings and pre-computed teacher embeddings.

In: text column(s) and the teacher embedding(s) as label. Out: the MSE (see :class:`EmbedDistillLoss`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from raystx.losses.embed_distill import EmbedDistillLoss


class MSELoss(EmbedDistillLoss):
    """:class:`EmbedDistillLoss` with ``distance_metric="mse"`` (multilingual knowledge distillation).

    Typical use: the teacher embeds English sentences, the student learns to map both the English sentence
    and its translation onto that embedding (the 2-D label is shared by every text column).

    Args:
        model: the student SentenceTransformer.
        projection_dim: output size of an optional learnable projection (the teacher dimension).

    Inputs:
        +--------------------------------+------------------------------------------------+
        | Texts                          | Labels                                         |
        +================================+================================================+
        | sentence                       | teacher embeddings (batch, teacher_dim)        |
        +--------------------------------+------------------------------------------------+
        | sentence_1, ..., sentence_n    | teacher embeddings (batch, n, teacher_dim)     |
        +--------------------------------+------------------------------------------------+
        | sentence_1, ..., sentence_n    | teacher embeddings (batch, teacher_dim)        |
        +--------------------------------+------------------------------------------------+

    Example:
        ::

            from raystx.losses import MSELoss

            # columns: english, french, label = teacher.encode(english)
            loss = MSELoss(student)
    """

    citation: ClassVar[str | None] = """
@inproceedings{reimers-2020-multilingual-sentence-bert,
    title = "Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/2004.09813",
}
"""

    def __init__(self, model: nn.Module, projection_dim: int | None = None) -> None:
        super().__init__(model, distance_metric="mse", projection_dim=projection_dim)

    def get_config_dict(self) -> dict[str, Any]:
        return {"projection_dim": self.projection_dim}
