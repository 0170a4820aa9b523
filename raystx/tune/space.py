"""The sweep's search space: a tree of distributions over dotted config keys, sampled define-by-run.

A search space maps dotted config keys (``args.learning_rate``, ``loss``) to a value. A value is a constant, a
distribution, or a dict/list holding distributions anywhere inside. Distributions are one-key dicts::

    {uniform: [low, high]}        float, uniform
    {loguniform: [low, high]}     float, log-uniform
    {int: [low, high]}            int in [low, high] (inclusive), optional ``step: k`` / ``log: true``
    {choice: [a, b, ...]}         categorical; options may be dicts holding their own (conditional) distributions
    {choice: {name: a, ...}}      categorical with named options
    {grid: [...]} / {grid: {...}} categorical that the ``grid`` searcher enumerates exhaustively

An option of the form ``{set: {dotted.key: value, ...}}`` is a *patch*: choosing it assigns every listed key at the
config root instead of the searched key (allowed only directly under a top-level search key). This is how a loss
choice carries its own dataset, e.g. CoSENT on scored pairs vs MNRL on (anchor, positive) pairs.

Parameters are named by their path: ``args.learning_rate``, ``loss``, ``loss[mnrl].kwargs.scale`` (a parameter that
exists only when ``loss`` is ``mnrl``). Categorical parameters take the option *label* (the option name, the loss
``type`` for dict options, or the scalar itself). ``SearchSpace.resolve(pick)`` walks the tree once, asking
``pick(name, distribution)`` for each active parameter: the Optuna define-by-run function passes
``trial.suggest_*``, a trial passes a lookup into its Tune config. So both see the same names and conditions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DIST_KEYS = ("uniform", "loguniform", "int", "choice", "grid")
MODIFIERS = ("step", "log")
SUPPORTED = (
    "{uniform: [low, high]}, {loguniform: [low, high]}, {int: [low, high]} (optional step: k or log: true), "
    "{choice: [a, b, ...]} or {choice: {name: a, ...}}, {grid: [...]}"
)
# Distribution names of other libraries (Ray Tune, Optuna, Hyperopt, W&B sweeps, numpy) that a user may write
# here; as one-key dicts they would otherwise be taken as literal values (``{normal: [0, 1]}`` as a dict).
FOREIGN_DISTS = frozenset(
    {
        "normal", "qnormal", "lognormal", "qlognormal", "randn", "qrandn", "gaussian", "beta", "gamma",
        "randint", "qrandint", "lograndint", "qlograndint", "quniform", "qloguniform", "log_uniform",
        "log_uniform_values", "q_uniform", "q_log_uniform", "int_uniform", "discrete_uniform",
        "categorical", "categories", "choices", "values", "grid_search", "sample_from", "float", "range",
        "suggest_float", "suggest_int", "suggest_categorical", "hp.choice", "hp.uniform", "hp.loguniform",
    }
)  # fmt: skip


class SearchSpaceError(ValueError):
    """The ``search:`` section is malformed; the message names the dotted key."""


@dataclass(frozen=True)
class Patch:
    """A chosen ``{set: {...}}`` option: dotted keys to assign at the config root."""

    values: dict[str, Any]


@dataclass
class Distribution:
    """One searchable parameter.

    ``kind`` is one of ``uniform``, ``loguniform``, ``int``, ``choice``, ``grid``. Numeric kinds use ``low``/``high``
    (and ``step``/``log`` for ``int``); categorical kinds use ``labels`` (what the searcher picks) and ``options``
    (label -> the option's value, which may hold nested distributions).
    """

    kind: str
    path: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    labels: list[Any] = field(default_factory=list)
    options: dict[Any, Any] = field(default_factory=dict)

    @property
    def categorical(self) -> bool:
        return self.kind in ("choice", "grid")

    def representative(self) -> Any:
        """A fixed value inside the range (the first label, or the low end), for driver-side checks."""
        if self.categorical:
            return self.labels[0]
        if self.kind == "int":
            return int(self.low)
        return float(self.low)

    def contains(self, value: Any) -> bool:
        if self.categorical:
            return value in self.labels
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return self.low - 1e-12 <= number <= self.high + 1e-12

    def describe(self) -> str:
        if self.categorical:
            return f"{self.kind}{self.labels}"
        extra = f", step={self.step}" if self.step and self.step > 1 else ""
        extra += ", log" if self.log and self.kind == "int" else ""
        return f"{self.kind}[{self.low}, {self.high}{extra}]"


def _is_dist(node: Any) -> bool:
    if not isinstance(node, Mapping):
        return False
    keys = set(node)
    found = keys & set(DIST_KEYS)
    return len(found) == 1 and keys <= set(DIST_KEYS) | set(MODIFIERS)


def check_distribution_keys(node: Mapping[str, Any], path: str) -> None:
    """Raise ``SearchSpaceError`` for a dict that looks like a distribution raystx does not support: a one-key
    dict named like another library's distribution or a misspelt one, a dict mixing a distribution with unknown
    keys, or one with two distributions. Other dicts are literal values and pass."""
    keys = [k for k in node if isinstance(k, str)]
    found = [k for k in keys if k in DIST_KEYS]
    if len(found) > 1:
        raise SearchSpaceError(
            f"search {path}: one distribution per value, got {found}; supported: {SUPPORTED}"
        )
    if found:
        extra = [k for k in keys if k not in DIST_KEYS and k not in MODIFIERS]
        if extra:
            raise SearchSpaceError(
                f"search {path}: {found[0]} does not take {extra} (only {list(MODIFIERS)} for int); "
                f"supported: {SUPPORTED}"
            )
        return
    if len(node) != 1 or not keys:
        return
    import difflib

    (key,) = keys
    shaped = isinstance(node[key], (list, tuple, Mapping))  # distribution arguments, not a scalar setting
    close = (
        difflib.get_close_matches(key.lower(), DIST_KEYS, n=1, cutoff=0.8) if len(key) >= 5 and shaped else []
    )
    if key.lower() in FOREIGN_DISTS or close:
        hint = f" (did you mean {close[0]!r}?)" if close and key.lower() not in FOREIGN_DISTS else ""
        raise SearchSpaceError(
            f"search {path}: unknown distribution {key!r}{hint}; it would be taken as the literal value "
            f"{dict(node)!r}. Supported distributions: {SUPPORTED}"
        )


def _option_label(value: Any, index: int, taken: set[Any]) -> Any:
    """The label a categorical option is picked by: scalars stand for themselves, dict options by their
    ``type`` (e.g. a loss class name) when unique, anything else by its index."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("type"), str) and value["type"] not in taken:
        return value["type"]
    return f"option{index}"


def _is_patch(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"set"}


def parse_distribution(node: Mapping[str, Any], path: str) -> Distribution:
    """Turn a one-key distribution dict into a ``Distribution``; errors name ``path``."""
    (kind,) = [k for k in node if k in DIST_KEYS]
    spec = node[kind]
    step, log = node.get("step"), bool(node.get("log", False))
    if kind in ("uniform", "loguniform", "int"):
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2):
            raise SearchSpaceError(f"search {path}: {kind} needs [low, high], got {spec!r}")
        try:
            low, high = float(spec[0]), float(spec[1])
        except (TypeError, ValueError):
            raise SearchSpaceError(f"search {path}: {kind} bounds must be numbers, got {spec!r}") from None
        if not low < high:
            raise SearchSpaceError(f"search {path}: {kind} needs low < high, got {spec!r}")
        if kind == "loguniform" and low <= 0:
            raise SearchSpaceError(f"search {path}: loguniform needs low > 0, got {low}")
        if kind == "int":
            if low != int(low) or high != int(high):
                raise SearchSpaceError(f"search {path}: int bounds must be integers, got {spec!r}")
            if step is not None and (int(step) < 1 or log):
                raise SearchSpaceError(
                    f"search {path}: int step must be >= 1 and cannot be combined with log"
                )
            if log and low < 1:
                raise SearchSpaceError(f"search {path}: int with log needs low >= 1")
            return Distribution("int", path, low=int(low), high=int(high), step=int(step or 1), log=log)
        if step is not None:
            raise SearchSpaceError(f"search {path}: step is only allowed for int")
        return Distribution(kind, path, low=low, high=high, log=kind == "loguniform")
    if step is not None or "log" in node:
        raise SearchSpaceError(f"search {path}: step/log are not allowed for {kind}")
    if isinstance(spec, Mapping):
        if not spec:
            raise SearchSpaceError(f"search {path}: {kind} needs at least one option")
        options = {str(k): v for k, v in spec.items()}
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise SearchSpaceError(f"search {path}: {kind} needs at least one option")
        options = {}
        for i, value in enumerate(spec):
            label = _option_label(value, i, set(options))
            if label in options:
                raise SearchSpaceError(f"search {path}: {kind} lists the option {label!r} twice")
            options[label] = value
    else:
        raise SearchSpaceError(f"search {path}: {kind} needs a list or a dict of options, got {spec!r}")
    return Distribution(kind, path, labels=list(options), options=options)


Pick = Callable[[str, Distribution], Any]


class SearchSpace:
    """A parsed ``search:`` section. ``tree`` maps dotted config keys to (possibly nested) search values."""

    def __init__(self, tree: Mapping[str, Any] | None) -> None:
        if not isinstance(tree, (Mapping, type(None))):
            raise SearchSpaceError(
                f"search must be a mapping of dotted keys to values, got {type(tree).__name__}"
            )
        self.tree: dict[str, Any] = dict(tree or {})
        self._dists: dict[str, Distribution] = {}
        for key, node in self.tree.items():
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise SearchSpaceError(f"search key {key!r} is not a dotted config key")
            self._collect(node, key, top_level=True)
        if not self._dists:
            what = "is empty" if not self.tree else f"holds only constants ({sorted(self.tree)})"
            raise SearchSpaceError(
                f"search {what}: a sweep needs at least one distribution to search over; supported: {SUPPORTED}"
            )

    # ------------------------------------------------------------------ structure
    def _collect(self, node: Any, path: str, top_level: bool = False) -> None:
        if _is_dist(node):
            dist = parse_distribution(node, path)
            self._dists[path] = dist
            for label, option in dist.options.items():
                inner = f"{path}[{label}]"
                if _is_patch(option):
                    if not top_level:
                        raise SearchSpaceError(
                            f"search {inner}: `set:` options are only allowed directly under a top-level search key"
                        )
                    patch = option["set"]
                    if not isinstance(patch, Mapping) or not patch:
                        raise SearchSpaceError(
                            f"search {inner}: `set:` needs a mapping of dotted keys to values"
                        )
                    for key, value in patch.items():
                        self._collect(value, f"{inner}.{key}")
                else:
                    self._collect(option, inner)
        elif isinstance(node, Mapping):
            check_distribution_keys(node, path)
            if "set" in node and len(node) == 1:
                raise SearchSpaceError(f"search {path}: `set:` is only allowed as an option of a choice/grid")
            for key, value in node.items():
                self._collect(value, f"{path}.{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                self._collect(value, f"{path}.{i}")

    @property
    def distributions(self) -> dict[str, Distribution]:
        """Every parameter (active or conditional) by name."""
        return dict(self._dists)

    def __bool__(self) -> bool:
        return bool(self._dists)

    # ------------------------------------------------------------------ sampling
    def resolve(self, pick: Pick) -> tuple[dict[str, Any], dict[str, Any]]:
        """Walk the tree, asking ``pick`` for each active parameter.

        Returns ``(assignments, params)``: ``assignments`` maps dotted config keys to concrete values (patches
        expanded), ``params`` maps each active parameter name to what ``pick`` returned.
        """
        params: dict[str, Any] = {}
        assignments: dict[str, Any] = {}
        for key, node in self.tree.items():
            value = self._resolve(node, key, pick, params)
            if isinstance(value, Patch):
                assignments.update(value.values)
            else:
                assignments[key] = value
        return assignments, params

    def _resolve(self, node: Any, path: str, pick: Pick, params: dict[str, Any]) -> Any:
        if _is_dist(node):
            dist = self._dists[path]
            value = pick(path, dist)
            params[path] = value
            if not dist.categorical:
                return _cast(dist, value)
            if value not in dist.options:
                raise SearchSpaceError(f"search {path}: {value!r} is not one of the options {dist.labels}")
            option = dist.options[value]
            inner = f"{path}[{value}]"
            if _is_patch(option):
                return Patch(
                    {k: self._resolve(v, f"{inner}.{k}", pick, params) for k, v in option["set"].items()}
                )
            return self._resolve(copy.deepcopy(option), inner, pick, params)
        if isinstance(node, Mapping):
            return {k: self._resolve(v, f"{path}.{k}", pick, params) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [self._resolve(v, f"{path}.{i}", pick, params) for i, v in enumerate(node)]
        return node

    def resolve_config(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``resolve`` with each parameter read from a trial's flat Tune config."""
        return self.resolve(lookup_pick(config))

    def representative(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """One fixed point (first option / low end everywhere)."""
        return self.resolve(lambda name, dist: dist.representative())

    def structural_variants(self, limit: int = 64) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """One resolved point per combination of the active categorical labels (numeric parameters at their low
        end), so the driver can check every loss/dataset combination before any trial starts. At most ``limit``."""
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []

        def walk(fixed: dict[str, Any]) -> None:
            if len(out) >= limit:
                return
            assignments, params = self.resolve(lambda name, dist: fixed.get(name, dist.representative()))
            open_names = [n for n in params if self._dists[n].categorical and n not in fixed]
            if not open_names:
                out.append((assignments, params))
                return
            name = open_names[0]
            for label in self._dists[name].labels:
                walk({**fixed, name: label})

        walk({})
        return out

    # ------------------------------------------------------------------ searchers
    def optuna_define_by_run(self) -> Callable[[Any], None]:
        """A define-by-run function for ``OptunaSearch(space=...)`` (``grid`` treated as a categorical)."""
        return DefineByRun(self)

    def grid_size(self) -> int:
        """How many points Tune's grid search enumerates: the product over every ``grid`` parameter (conditional
        ones included, as the flat Tune space expands them independently)."""
        size = 1
        for dist in self._dists.values():
            if dist.kind == "grid":
                size *= len(dist.labels)
        return size

    def tune_param_space(self) -> dict[str, Any]:
        """A flat Tune ``param_space`` for Tune's own (random / grid) search: one entry per parameter, including
        conditional ones (sampled independently; a trial ignores the ones its choices do not reach)."""
        from ray import tune

        out: dict[str, Any] = {}
        for name, dist in self._dists.items():
            if dist.kind == "grid":
                out[name] = tune.grid_search(list(dist.labels))
            elif dist.kind == "choice":
                out[name] = tune.choice(list(dist.labels))
            elif dist.kind == "uniform":
                out[name] = tune.uniform(dist.low, dist.high)
            elif dist.kind == "loguniform":
                out[name] = tune.loguniform(dist.low, dist.high)
            elif dist.log:
                out[name] = tune.lograndint(int(dist.low), int(dist.high) + 1)
            else:
                out[name] = tune.qrandint(int(dist.low), int(dist.high), dist.step or 1)
        return out

    def optuna_distributions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna distribution of each parameter named in ``params`` (for building a study post hoc)."""
        return {name: optuna_distribution(self._dists[name]) for name in params if name in self._dists}

    def distributions_json(
        self, params: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """``optuna.distributions.distribution_to_json`` of each active parameter (``config`` is unused here)."""
        import optuna

        return {
            name: optuna.distributions.distribution_to_json(dist)
            for name, dist in self.optuna_distributions(params).items()
        }

    def describe(self) -> dict[str, str]:
        return {name: dist.describe() for name, dist in self._dists.items()}


class DefineByRun:
    """``space.resolve`` with ``trial.suggest_*`` picks; a plain class so the searcher state pickles (resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.resolve(lambda name, dist: suggest(trial, name, dist))


def _cast(dist: Distribution, value: Any) -> Any:
    if dist.kind == "int":
        return int(value)
    return float(value)


def suggest(trial: Any, name: str, dist: Distribution) -> Any:
    """``trial.suggest_*`` for ``dist`` (an ``optuna.Trial``)."""
    if dist.categorical:
        return trial.suggest_categorical(name, list(dist.labels))
    if dist.kind == "int":
        if dist.log:
            return trial.suggest_int(name, int(dist.low), int(dist.high), log=True)
        return trial.suggest_int(name, int(dist.low), int(dist.high), step=dist.step or 1)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.kind == "loguniform")


def optuna_distribution(dist: Distribution) -> Any:
    import optuna

    if dist.categorical:
        return optuna.distributions.CategoricalDistribution(list(dist.labels))
    if dist.kind == "int":
        if dist.log:
            return optuna.distributions.IntDistribution(int(dist.low), int(dist.high), log=True)
        return optuna.distributions.IntDistribution(int(dist.low), int(dist.high), step=dist.step or 1)
    return optuna.distributions.FloatDistribution(dist.low, dist.high, log=dist.kind == "loguniform")


def lookup_pick(config: Mapping[str, Any]) -> Pick:
    """A ``pick`` that reads each parameter from a trial's (flat) Tune config; a missing name is an error."""

    def pick(name: str, dist: Distribution) -> Any:
        if name not in config:
            raise SearchSpaceError(
                f"the trial config has no value for the search parameter {name!r} (it has {sorted(config)})"
            )
        return config[name]

    return pick


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Assign ``value`` at dotted ``key`` in the nested dict ``raw`` (creating sections as needed).

    A whole section (e.g. ``loss``) is replaced; assign deeper keys to change one field."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SearchSpaceError(f"search {key}: {'.'.join(parts[: i + 1])} is not a section of the config")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def apply_assignments(raw: Mapping[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the raw config with every dotted assignment applied, shorter keys first."""
    out = copy.deepcopy(dict(raw))
    for key in sorted(assignments, key=lambda k: k.count(".")):
        set_dotted(out, key, assignments[key])
    return out
