"""EmbedDistillLoss: match the student's embeddings to pre-computed teacher embeddings.

In: one or more text columns and a label column with the teacher embedding(s): (batch, teacher_dim), shared
by every column, or (batch, num_columns, teacher_dim), one per column. Out: the mean over columns of the
chosen distance (cosine, l2 or mse), optionally after a learnable projection of the student embeddings.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.base import ColumnContract, RaystxLoss

DistanceName = Literal["mse", "l2", "cosine"]


def student_dimension(model: nn.Module) -> int:
    """The sentence-embedding size of ``model`` (raystx or sentence-transformers model)."""
    for getter in ("get_sentence_embedding_dimension", "get_embedding_dimension"):
        if hasattr(model, getter):
            dim = getattr(model, getter)()
            if dim is not None:
                return int(dim)
    raise ValueError("Cannot read the student's embedding dimension from the model.")


def split_teacher_embeddings(labels: Tensor, num_columns: int) -> list[Tensor]:
    """Teacher targets per input column from a (b, t) (broadcast) or (b, num_columns, t) label tensor."""
    labels = labels.detach()
    if labels.dim() == 2:
        return [labels] * num_columns
    if labels.dim() == 3:
        if labels.shape[1] != num_columns:
            raise ValueError(
                f"The label holds {labels.shape[1]} teacher embeddings per row but the dataset has {num_columns} "
                f"text columns; pass (batch, {num_columns}, teacher_dim) or (batch, teacher_dim) labels."
            )
        return list(labels.unbind(dim=1))
    raise ValueError(
        f"Teacher embeddings must be (batch, dim) or (batch, columns, dim); got {labels.dim()}-D labels."
    )


class EmbedDistillLoss(RaystxLoss):
    """Embedding distillation (EmbedDistill): per column, the distance between student and teacher embeddings.

    ``distance_metric`` is ``"cosine"`` (mean ``1 - cos``), ``"l2"`` (mean Euclidean distance) or ``"mse"``
    (mean squared error over all entries); the per-column losses are averaged. With ``projection_dim`` a
    learnable ``nn.Linear(student_dim, projection_dim)`` maps student embeddings into the teacher's space
    first; it is returned by :meth:`trainable_modules` and can be saved and reloaded with
    :meth:`save_projection` / :meth:`load_projection`.

    Args:
        model: the student SentenceTransformer.
        distance_metric: ``"cosine"`` (default), ``"l2"`` or ``"mse"``.
        projection_dim: output size of the optional projection (the teacher dimension).

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

            from raystx.losses import EmbedDistillLoss

            # label column: teacher.encode(sentences) computed once with the teacher
            loss = EmbedDistillLoss(student, distance_metric="cosine", projection_dim=1024)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, None, "vector")
    citation: ClassVar[str | None] = """
@article{kim2023embeddistill,
    title={EmbedDistill: A Geometric Knowledge Distillation for Information Retrieval},
    author={Kim, Seungyeon and Rawat, Ankit Singh and Zaheer, Manzil and Jayasumana, Sadeep and Sadhanala, Veeranjaneyulu and Jitkrittum, Wittawat and Menon, Aditya Krishna and Fergus, Rob and Kumar, Sanjiv},
    year={2023},
    eprint={2301.12005},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""

    def __init__(
        self, model: nn.Module, distance_metric: DistanceName = "cosine", projection_dim: int | None = None
    ) -> None:
        super().__init__(model)
        if distance_metric not in ("mse", "l2", "cosine"):
            raise ValueError(f"distance_metric must be 'mse', 'l2' or 'cosine', got {distance_metric!r}.")
        self.distance_metric = distance_metric
        self.projection_dim = projection_dim
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            self.projection = nn.Linear(
                student_dimension(model), projection_dim, device=getattr(model, "device", None)
            )

    def column_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Distance between one column's student (b, d) and teacher (b, t) embeddings, as a scalar."""
        teacher = teacher.to(device=student.device, dtype=student.dtype)
        if self.projection is not None:
            student = self.projection(student)
        if self.distance_metric == "mse":
            return F.mse_loss(student, teacher)
        if self.distance_metric == "l2":
            return (student - teacher).norm(dim=-1).mean()
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: one (b, d) tensor per column; ``labels``: teacher embeddings. Returns a scalar."""
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} needs pre-computed teacher embeddings in the label column "
                "(compute them once with the teacher, e.g. dataset.map(...))."
            )
        teachers = split_teacher_embeddings(labels, len(embeddings))
        return torch.stack([self.column_loss(s, t) for s, t in zip(embeddings, teachers)]).mean()

    def trainable_modules(self) -> list[nn.Module]:
        return [self.projection] if self.projection is not None else []

    def save_projection(self, path: str | os.PathLike) -> None:
        """Write the projection's weights to ``path`` (safetensors)."""
        from safetensors.torch import save_model

        if self.projection is None:
            raise ValueError("No projection to save: construct the loss with projection_dim=<teacher dim>.")
        save_model(self.projection, str(path))

    def load_projection(self, path: str | os.PathLike) -> None:
        """Load projection weights written by :meth:`save_projection` (creating the layer if needed)."""
        from safetensors.torch import load_file

        state = load_file(str(path))
        out_features, in_features = state["weight"].shape
        if self.projection is None:
            if in_features != student_dimension(self.model):
                raise ValueError(
                    f"The saved projection expects {in_features}-d student embeddings, "
                    f"the model produces {student_dimension(self.model)}-d ones."
                )
            self.projection = nn.Linear(in_features, out_features, device=getattr(self.model, "device", None))
            self.projection_dim = out_features
        elif (self.projection.in_features, self.projection.out_features) != (in_features, out_features):
            raise ValueError(
                f"The saved projection maps {in_features} -> {out_features}, the configured one "
                f"{self.projection.in_features} -> {self.projection.out_features}."
            )
        self.projection.load_state_dict(state)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": self.distance_metric, "projection_dim": self.projection_dim}
