"""Secret redaction shared by every place that writes text a user may publish or send away.

A *secret* is the value of an environment variable whose name contains TOKEN, KEY, SECRET, PASSWORD, PASSWD or
CREDENTIAL (``HF_TOKEN``, ``WANDB_API_KEY``, ...), or a field/key with such a name. The model card, the
tracker integrations (``report_to``) and ``push_to_hub`` use these functions; this module imports nothing
from raystx, so any layer may depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
MIN_SECRET_LENGTH = 6
REDACTED = "<redacted>"


def is_secret_name(name: str) -> bool:
    """True when a variable/field name suggests it holds a credential (``HF_TOKEN``, ``api_key``, ...)."""
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables with secret-looking names, longest first.

    Values shorter than ``MIN_SECRET_LENGTH`` characters are ignored (masking ``1`` or ``true`` everywhere would
    mangle the text and such values are not credentials).
    """
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and v and len(v.strip()) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret environment value replaced by ``<redacted>``."""
    for value in secret_env_values(environ):
        text = text.replace(value, REDACTED)
        stripped = value.strip()
        if stripped != value:
            text = text.replace(stripped, REDACTED)
    return text


def redact_value(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """``value`` (nested dicts/lists/strings) with secret env values masked and secret-named keys redacted."""
    if isinstance(value, str):
        return redact(value, environ)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_secret_name(str(k)) and v not in (None, "") else redact_value(v, environ))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, environ) for v in value)
    return value


def redact_named(name: str, value: Any) -> Any:
    """``<redacted>`` for a set value under a secret-looking name (``hub_token``), else ``value`` unchanged."""
    return REDACTED if is_secret_name(name) and value not in (None, "") else value
