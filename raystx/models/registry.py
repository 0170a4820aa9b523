"""Map the class paths found in ``modules.json`` to raystx module classes.

Accepted: sentence-transformers 6.x paths (``sentence_transformers.base.modules.transformer.Transformer``),
legacy ones (``sentence_transformers.models.Transformer``) and raystx's own (``raystx.models.Transformer``).
The class is chosen by its final name; nothing is imported from the path, so a model directory cannot make
raystx run code.
"""

from __future__ import annotations

from raystx.models.dense import Dense
from raystx.models.module import ModelModule
from raystx.models.normalize import Normalize
from raystx.models.pooling import Pooling
from raystx.models.static_embedding import StaticEmbedding
from raystx.models.transformer import Transformer

MODULE_CLASSES: dict[str, type[ModelModule]] = {
    cls.__name__: cls for cls in (Transformer, Pooling, Normalize, Dense, StaticEmbedding)
}
TRUSTED_PREFIXES = ("sentence_transformers.", "raystx.")


def module_class_for(class_ref: str) -> type[ModelModule]:
    """The raystx class implementing the module named by ``class_ref`` (raises ValueError if unsupported)."""
    name = class_ref.rsplit(".", 1)[-1]
    if class_ref.startswith(TRUSTED_PREFIXES) and name in MODULE_CLASSES:
        return MODULE_CLASSES[name]
    raise ValueError(
        f"Unsupported module type {class_ref!r} in modules.json; raystx supports "
        f"{sorted(MODULE_CLASSES)} from sentence_transformers or raystx"
    )
