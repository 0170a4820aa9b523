"""Environment references in a config's values, turned into ``--set`` overrides for ``raystx``.

A config value may hold ``${VAR}`` or ``${VAR:-default}`` (shell syntax), for example
``path: ${RAYSTX_DATA_DIR}/stsb/train.tsv`` or ``storage_path: ${RAYSTX_STORAGE:-}``. The config loader
reads such values literally, so the job entry points expand them here and pass each expanded value as
``--set key.path=value``:

* a value that is exactly one reference (``${RAYSTX_STORAGE:-}``) is passed unquoted, so ``true``, ``4``
  or the empty string (null) keep their YAML meaning, as any ``--set`` value does;
* a reference inside a longer string (``${DIR}/train.tsv``) stays a string;
* an unset variable without a default is an error that names the key and the variable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigEnvError(ValueError):
    """A config value names an environment variable that is not set (and has no default)."""


def expand(text: str, environ: Mapping[str, str], key: str = "") -> str:
    """``text`` with every ``${VAR}`` / ``${VAR:-default}`` replaced from ``environ``."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                where = f"{key}: " if key else ""
                raise ConfigEnvError(
                    f"{where}{text!r} needs the environment variable {name}, which is not set; set it "
                    f"(e.g. in the job's runtime_env env_vars) or override the key with --set"
                )
            return default
        return value

    return _REF.sub(replace, text)


def _override_value(original: str, expanded: str) -> str:
    """The text after ``key=`` in ``--set``: YAML scalars pass through when the whole value was one
    reference; anything else is JSON-quoted so it stays a string."""
    match = _REF.fullmatch(original.strip())
    if match is not None:
        try:
            parsed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            parsed = expanded
        if parsed is None or isinstance(parsed, (bool, int, float)):
            return expanded.strip()
    return json.dumps(expanded)


def _covered(key: str, overridden: Iterable[str]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in overridden)


def env_overrides(
    raw: Mapping[str, Any], environ: Mapping[str, str], overridden: Iterable[str] = ()
) -> list[str]:
    """``key.path=value`` items for every value of ``raw`` (a loaded YAML mapping) that references the
    environment; keys in ``overridden`` (and below them) are skipped, since a later ``--set`` replaces them."""
    overridden = list(overridden)
    items: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for name, value in node.items():
                if "." in str(name) and _has_ref(value):
                    raise ConfigEnvError(f"{prefix}{name}: a key holding '.' cannot take ${{...}} values")
                walk(value, f"{prefix}{name}.")
            return
        key = prefix[:-1]
        if not _has_ref(node) or _covered(key, overridden):
            return
        if isinstance(node, str):
            items.append(f"{key}={_override_value(node, expand(node, environ, key))}")
        else:  # a list: expand its strings and pass the whole list as a JSON (YAML flow) value
            if any(_has_ref(v) and not isinstance(v, str) for v in node):
                raise ConfigEnvError(f"{key}: only plain strings in a list may hold ${{...}}")
            expanded = [expand(v, environ, key) if isinstance(v, str) else v for v in node]
            items.append(f"{key}={json.dumps(expanded)}")

    walk(raw, "")
    return items


def _has_ref(node: Any) -> bool:
    if isinstance(node, str):
        return _REF.search(node) is not None
    if isinstance(node, (list, tuple)):
        return any(_has_ref(v) for v in node)
    if isinstance(node, Mapping):
        return any(_has_ref(v) for v in node.values())
    return False
