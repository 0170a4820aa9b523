"""Keep object-storage credentials out of Ray's files while a sweep runs.

Ray Tune copies the driver's ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
``AWS_SECURITY_TOKEN`` into every trial actor's ``runtime_env`` ``env_vars`` (``ray.tune.execution.class_cache``),
and Ray writes runtime environments, values included, to the node's ``runtime_env_agent.log``. raystx takes
credentials from each node's environment (which trial actors and their Train workers inherit), as for training, so
``credentials_stay_on_nodes()`` turns that copy off for the duration of a sweep: the names are taken out of Tune's
list while the block runs and put back afterwards.

A cluster whose nodes lack the credentials, which only the driver has, then fails on the first trial's
write to storage (its error names the location); set them on the nodes, not in a ``runtime_env``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

logger = logging.getLogger("raystx.tune")

CREDENTIAL_ENV_VARS = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}
)


@contextlib.contextmanager
def credentials_stay_on_nodes() -> Iterator[None]:
    """While the block runs, Tune does not put ``CREDENTIAL_ENV_VARS`` into trial actors' runtime envs."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:  # another Ray layout: nothing to turn off
        yield
        return
    original = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if original is None:
        logger.debug("ray.tune.execution.class_cache has no ENV_VARS_TO_PROPAGATE; nothing to turn off")
        yield
        return
    class_cache.ENV_VARS_TO_PROPAGATE = type(original)(v for v in original if v not in CREDENTIAL_ENV_VARS)
    try:
        yield
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE = original
