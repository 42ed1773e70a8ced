"""Search spaces: the `sweep.space` YAML -> `trial.suggest_*` calls -> Hydra override strings.

Each entry is a config key (or a config group, e.g. `optimizer`) and how to sample it:

    optimizer.lr:      {low: 1e-4, high: 1e-1, log: true}        # float (int if low/high are ints)
    data.batch_size:   {choices: [32, 64, 128, 256]}             # categorical
    weight_decay_on:   {choices: [false, true], override: false} # a switch: sampled, not passed on
    optimizer.weight_decay:                                      # conditional: sampled only when
      {low: 1e-4, high: 1e-2, log: true, when: {weight_decay_on: true}, otherwise: 0.0}

`when` names earlier entries and the value(s) they must have; when it does not hold, the key gets
`otherwise` (null: the training default). `grid: [...]` lists a float/int entry's values for the
grid sampler. Optuna's parameter names are the keys, so the dashboard shows `optimizer.lr`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optlab.validate import ConfigError

KEYS = {"type", "low", "high", "log", "step", "choices", "when", "otherwise", "override", "grid"}
TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One entry of the space as `parse_param` checked it: its Optuna distribution, when it is sampled
    (`when`, else `otherwise`), and whether its value is passed on as an override."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)
    otherwise: Any = None
    override: bool = True
    grid: tuple = ()

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def boundary_values(self) -> list:
        """Values that exercise this entry when a config is composed up front (validation)."""
        values = list(self.choices) if self.type == "categorical" else [self.low, self.high]
        return values + ([self.otherwise] if self.when and self.otherwise is not None else [])

    def grid_values(self) -> list:
        if self.type == "categorical":
            return list(self.choices)
        return list(self.grid)


def _bad(name: str, message: str) -> ConfigError:
    return ConfigError(f"sweep.space.{name}: {message}")


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_param(name: str, spec, earlier: dict[str, Param]) -> Param:
    """One entry read and checked (its type inferred from low/high or choices when not given); `when` may name
    only the `earlier` entries. Any problem is one ConfigError naming `sweep.space.<name>`."""
    spec = _plain(spec)
    if not isinstance(spec, dict):
        raise _bad(
            name, f"expected a mapping such as {{low: 1e-4, high: 1e-1, log: true}} or {{choices: [...]}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise _bad(name, f"unknown field(s) {', '.join(unknown)}; fields are: {', '.join(sorted(KEYS))}")
    kind = spec.get("type") or ("categorical" if "choices" in spec else None)
    if kind is None and "low" in spec and "high" in spec:
        both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("low", "high"))
        kind = "int" if both_int and not isinstance(spec.get("step"), float) else "float"
    if kind not in TYPES:
        raise _bad(
            name, f"type={kind!r}: give low and high (float/int) or choices (categorical), or type: {' | '.join(TYPES)}"
        )
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise _bad(name, f"when must map earlier entries to values, e.g. {{weight_decay_on: true}}; got {when!r}")
    conditions = {}
    for other, wanted in when.items():
        if other not in earlier:
            raise _bad(
                name,
                f"when refers to {other!r}, which is not an entry above it "
                f"(entries above: {', '.join(earlier) or 'none'})",
            )
        wanted = tuple(wanted) if isinstance(wanted, list) else (wanted,)
        if earlier[other].type == "categorical":
            missing = [w for w in wanted if w not in earlier[other].choices]
            if missing:
                raise _bad(
                    name, f"when {other} = {missing[0]!r}, but {other} only takes {list(earlier[other].choices)}"
                )
        conditions[other] = wanted
    if "otherwise" in spec and not conditions:
        raise _bad(name, "otherwise is only used together with when")
    common = dict(
        name=name,
        type=kind,
        when=conditions,
        otherwise=spec.get("otherwise"),
        override=bool(spec.get("override", True)),
    )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _bad(name, f"choices must be a non-empty list, got {choices!r}")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise _bad(name, f"choices must be numbers, strings, booleans or null; got {c!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise _bad(name, f"choices repeat a value: {choices}")
        extra = sorted({"low", "high", "log", "step", "grid"} & set(spec))
        if extra:
            raise _bad(name, f"{', '.join(extra)} do not apply to choices")
        return Param(choices=tuple(choices), **common)
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    if not (_number(low) and _number(high)):
        raise _bad(name, f"low and high must be numbers, got low={low!r} high={high!r}")
    if "choices" in spec:
        raise _bad(name, "give either low/high or choices, not both")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _bad(name, f"log must be true or false, got {log!r}")
    grid = spec.get("grid") or []
    if not isinstance(grid, list) or not all(_number(g) and low <= g <= high for g in grid):
        raise _bad(name, f"grid must list numbers within [{low}, {high}], got {grid!r}")
    param = Param(low=low, high=high, log=log, step=step, grid=tuple(grid), **common)
    try:
        param.distribution()
    except ValueError as e:
        raise _bad(name, str(e).strip().splitlines()[0]) from None
    return param


@dataclass
class SearchSpace:
    """`sweep.space` (or a compare candidate's space) as Params, in the YAML's order, which `when` relies on:
    samples a trial's values and writes them as Hydra overrides."""

    params: list[Param]

    @classmethod
    def from_config(cls, space: DictConfig | dict | None) -> SearchSpace:
        space = _plain(space) or {}
        if not isinstance(space, dict) or not space:
            raise ConfigError(
                "sweep.space is empty: give at least one entry, e.g. "
                "`sweep.space: {optimizer.lr: {low: 1e-4, high: 1e-1, log: true}}`"
            )
        earlier: dict[str, Param] = {}
        for name, spec in space.items():
            earlier[str(name)] = parse_param(str(name), spec, earlier)
        if not any(p.override for p in earlier.values()):
            raise ConfigError("sweep.space: every entry has override: false, so trials would not differ")
        return cls(list(earlier.values()))

    def sample(self, trial) -> dict[str, Any]:
        """Suggest every active entry; returns {key: value} of the config keys to override."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if all(chosen.get(other, object()) in wanted for other, wanted in p.when.items()):
                chosen[p.name] = p.suggest(trial)
            elif p.otherwise is not None:
                chosen[p.name] = p.otherwise
        return {p.name: chosen[p.name] for p in self.params if p.override and p.name in chosen}

    def overrides(self, values: dict[str, Any]) -> list[str]:
        return [f"{key}={format_value(value)}" for key, value in values.items()]

    def grid(self) -> dict[str, list]:
        """The grid sampler's search space; every float/int entry needs `grid: [...]` values."""
        missing = [p.name for p in self.params if not p.grid_values()]
        if missing:
            raise ConfigError(
                f"sweep/sampler=grid needs the values of each float/int entry: add e.g. "
                f"`grid: [1e-3, 1e-2]` to sweep.space.{missing[0]}"
            )
        return {p.name: p.grid_values() for p in self.params}

    def boundary_overrides(self) -> list[list[str]]:
        """A few override lists that together use every boundary value of every entry."""
        values = [[(p.name, v) for v in p.boundary_values()] for p in self.params if p.override]
        rounds = max((len(v) for v in values), default=1)  # no entries: the config as given
        return [[f"{name}={format_value(v)}" for name, v in (vs[i % len(vs)] for vs in values)] for i in range(rounds)]


def _looks_typed(text: str) -> bool:
    """Would Hydra read this string as something else (a number, bool or null)?"""
    if text.lower() in ("true", "false", "null", "nan", "inf", "-inf"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_value(value) -> str:
    """A Python value as a Hydra override value (floats keep their full precision)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        safe = value and all(c.isalnum() or c in "_-./:" for c in value) and not _looks_typed(value)
        return value if safe else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a Hydra override")
