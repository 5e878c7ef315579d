"""Search spaces over config keys, written in YAML; each sampled value becomes a ``--set`` override.

Example ``space.yaml``::

    train.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}   # log-uniform float in [low, high]
    model.dropout: {uniform: [0.0, 0.5]}                   # uniform float
    model.num_layers: {int: [1, 4]}                        # integer in [low, high] (optional step: [1, 8, 2])
    model.fm_rank: {logint: [4, 64]}                       # integer, log-uniform
    model.head_mlp: {choice: [[512, 256], [256, 128]]}     # one of the values (any YAML value)
    models:                                                # extra keys for one model only
      dcnv2:
        model.dcnv2.rank: {int: [16, 128, 16]}

The keys are those of ``wukong train --set`` (``wukong.config``); every key is checked against the
config, at both ends of its range, before any trial runs. A space is given as a YAML path, by name
(``recipe``: ``configs/spaces/recipe.yaml``), or as its YAML text (a pipeline parameter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wukong.config import PRESETS_DIR, ConfigError, load_config, resolve_named_yaml

SPACES_DIR = PRESETS_DIR / "spaces"
KINDS = ("uniform", "loguniform", "int", "logint", "choice")
PRIMITIVES = (str, int, float, bool, type(None))


def resolve_space(space: str | Path) -> Path:
    """A space name (``recipe``) resolves to ``configs/spaces/recipe.yaml``; anything else is a YAML path."""
    return resolve_named_yaml(space, SPACES_DIR, "search space")


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({str(error).splitlines()[0]})") from None


def format_value(value: Any) -> str:
    """The text of ``value`` in a ``KEY=VALUE`` override (parsed back as YAML)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class Parameter:
    """One searched key: ``kind`` is one of :data:`KINDS`, ``values`` its bounds (and step) or choices."""

    key: str
    kind: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, key: str, spec: Any, where: str) -> Parameter:
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}: {key}: expected one of {{{'|'.join(KINDS)}: [...]}}, got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: {key}: {kind} needs a list, got {values!r}")
        if kind == "choice":
            return cls(key, kind, tuple(values))
        lengths = (2, 3) if kind == "int" else (2,)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(values) not in lengths or not numbers:
            raise ConfigError(
                f"{where}: {key}: {kind} needs [low, high]{' or [low, high, step]' if kind == 'int' else ''}, "
                f"got {values!r}"
            )
        low, high = values[0], values[1]
        if not low < high or (kind.startswith("log") and low <= 0):
            raise ConfigError(f"{where}: {key}: need low < high{' and low > 0' if kind.startswith('log') else ''}")
        if kind in ("int", "logint") and not all(float(v).is_integer() for v in values):
            raise ConfigError(f"{where}: {key}: {kind} bounds must be integers, got {values!r}")
        return cls(key, kind, tuple(values))

    def distribution(self):
        """The optuna distribution of this parameter (choices are encoded as text when not plain values)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution([v if isinstance(v, PRIMITIVES) else format_value(v) for v in self.values])
        if self.kind in ("int", "logint"):
            step = int(self.values[2]) if len(self.values) == 3 else 1
            return IntDistribution(int(self.values[0]), int(self.values[1]), log=self.kind == "logint", step=step)
        return FloatDistribution(float(self.values[0]), float(self.values[1]), log=self.kind == "loguniform")

    def extremes(self) -> list[Any]:
        return list(self.values) if self.kind == "choice" else [self.values[0], self.values[1]]


@dataclass(frozen=True)
class SearchSpace:
    """The parameters searched for one model."""

    parameters: tuple[Parameter, ...]
    source: str = "search space"

    @classmethod
    def load(cls, space: str | Path, model: str) -> SearchSpace:
        """``space``: a YAML path, a name under ``configs/spaces/`` (``recipe``), or the YAML text itself
        (text with a line break, or a ``{...}`` mapping: how a pipeline run passes a space its image lacks)."""
        text = str(space)
        if "\n" in text or text.lstrip().startswith("{"):
            return cls.from_dict(_parse(text, "search space text"), model, "search space text")
        path = resolve_space(space)
        return cls.from_dict(_parse(path.read_text(), str(path)), model, str(path))

    @classmethod
    def from_dict(cls, data: Any, model: str, source: str = "search space") -> SearchSpace:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys to ranges")
        per_model = data.get("models") or {}
        if not isinstance(per_model, dict):
            raise ConfigError(f"{source}: models: expected a mapping of model names to their extra keys")
        merged = {k: v for k, v in data.items() if k != "models"}
        merged.update(per_model.get(model) or {})
        if not merged:
            raise ConfigError(f"{source}: no parameters to search for model {model}")
        return cls(tuple(Parameter.parse(key, spec, source) for key, spec in merged.items()), source)

    def distributions(self) -> dict[str, Any]:
        return {p.key: p.distribution() for p in self.parameters}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """``KEY=VALUE`` overrides of sampled ``params`` (as optuna reports them)."""
        return [f"{p.key}={format_value(params[p.key])}" for p in self.parameters]

    def check(self, preset: str, fixed: list[str]) -> None:
        """Fail with one line if a key is unknown or an end of its range is not a valid setting."""
        for parameter in self.parameters:
            for value in parameter.extremes():
                try:
                    load_config(preset, [*fixed, f"{parameter.key}={format_value(value)}"])
                except ConfigError as error:
                    raise ConfigError(f"{self.source}: {parameter.key}={format_value(value)}: {error}") from None
