"""The comparison's config (conf/compare.yaml) read and checked: candidates, tasks, the protocol's
numbers. Nothing here trains or touches the tuning storage.

- A candidate is a set of training overrides: `sgd` (= `{optimizer: sgd}`) or a mapping such as
  `{optimizer: adamw, scheduler: none}` or `{data.batch_size: 256, optimizer.lr: 0.4}`; two keys
  are not overrides: `name` (how the report calls it) and `space` (its own search space, `{}`
  for none: the candidate runs as given).
- A task is a data + model + target + budget recipe: `conf/task/<name>.yaml` with `overrides` (a
  list of training overrides: the data, the model, the budget) and `target` ({metric, value}).
- The search space of a candidate: its `space`, else its optimizer's `search_space` entry
  (conf/optimizer/*.yaml), else lr log-uniform over 3 decades around the optimizer's default
  (and weight decay over 3 decades around its default, or [1e-5, 1e-2] when that is 0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from optlab.sweep.space import format_value
from optlab.validate import ConfigError

SPECIAL_KEYS = ("name", "space")
HALF_RANGE = 10**1.5  # default space: [default / 10^1.5, default * 10^1.5], 3 decades


@dataclass
class Candidate:
    """One entry of `candidates`: its training overrides, the name the report gives it (its `slug` names
    its tuning and run directories), and its search space."""

    name: str
    overrides: list[str]
    space: dict | None = None  # None: from the optimizer (see module docstring)

    @property
    def slug(self) -> str:
        return slug(self.name)


@dataclass
class Task:
    """One entry of `tasks` (conf/task/<name>.yaml): its training overrides and its target, `metric` at least
    `value` (at most when not `higher_is_better`); the report counts the examples and seconds to reach it."""

    name: str
    overrides: list[str]
    metric: str
    value: float
    higher_is_better: bool = True


@dataclass
class Protocol:
    """The whole comparison as `protocol` reads it from conf/compare.yaml: what is compared on which
    tasks, the tuning and re-run budgets, and how pairs are tested; `dir` is its folder (<root>/<name>)."""

    name: str
    dir: Path
    candidates: list[Candidate]
    tasks: list[Task]
    trials: int
    studies: int
    tune_seed: int
    eval_seeds: list[int]
    val_every: int | None
    alpha: float
    test: str
    report: bool | str
    correction: str = "holm"  # holm | none: how the pairwise p-values of one task are adjusted
    metric: str = "val/acc_best"  # the final metric: what tuning ranks by and re-runs are compared on
    direction: str = "maximize"
    training_overrides: list[str] = field(default_factory=list)  # the command line's
    run_defaults: list[str] = field(default_factory=list)  # before the task's and the command line's
    training: list[str] = field(default_factory=list)  # the comparison's: after the task's
    analyses: list[dict] = field(default_factory=list)  # extra report sections ({_target_: ..., **options})
    pairs: list[list[str]] | None = None  # the pairs tested (Holm's family); None: every pair

    def tested_pairs(self) -> list[tuple[str, str]]:
        names = [c.name for c in self.candidates]
        if self.pairs is None:
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        return [(a, b) for a, b in self.pairs]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "_"


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def split_command_line(args: list[str], config_dir: Path) -> tuple[list[str], list[str]]:
    """(compare.py's own arguments, training overrides). Training overrides are not composed into
    compare.yaml (whose training part is digits') but into each task's config, so that
    `tasks=[cifar10_resnet18] data.root=...` works); flags and protocol and sweep keys stay with Hydra."""
    own = {"compare", "hydra", "sweep"}
    for name in ("compare.yaml", "sweep.yaml"):
        own |= {k for k in OmegaConf.load(Path(config_dir) / name) if k != "defaults"}
    own -= {"task_name"}  # a training key that compare.yaml sets for its own run directory
    hydra_args, training, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            takes_value = arg in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp")
            hydra_args += args[i : i + 2] if takes_value else [arg]
            i += 2 if takes_value else 1
            continue
        key = re.split(r"[./=@]", arg.lstrip("+~"), maxsplit=1)[0]
        (hydra_args if key in own else training).append(arg)
        i += 1
    return hydra_args, training


def parse_candidate(entry, index: int) -> Candidate:
    entry = _plain(entry)
    if isinstance(entry, str) and entry and "=" not in entry:
        return Candidate(entry, [f"optimizer={entry}"])
    if not isinstance(entry, dict) or not entry:
        raise ConfigError(
            f"candidates[{index}]={entry!r} is invalid: write an optimizer name (sgd) or a mapping of "
            "training overrides ({optimizer: adamw, scheduler: none})"
        )
    space = entry.get("space")
    if space is not None and not isinstance(space, dict):
        raise ConfigError(
            f"candidates[{index}].space must be a mapping like sweep.space ({{}}: no tuning), got {space!r}"
        )
    settings = {k: v for k, v in entry.items() if k not in SPECIAL_KEYS}
    overrides = [f"{k}={format_value(v)}" for k, v in settings.items()]
    name = entry.get("name") or ",".join(
        str(v) if k == "optimizer" else f"{k}={format_value(v)}" for k, v in settings.items()
    )
    if not isinstance(name, str) or not name:
        raise ConfigError(f"candidates[{index}].name={name!r} is invalid: give it a name")
    return Candidate(name, overrides, space)


def candidates_of(node) -> list[Candidate]:
    entries = _plain(node)
    if not isinstance(entries, list) or len(entries) == 0:
        raise ConfigError(f"candidates={entries!r} is invalid: list what to compare, e.g. candidates=[sgd,adamw]")
    found = [parse_candidate(e, i) for i, e in enumerate(entries)]
    seen: dict[str, int] = {}
    for i, c in enumerate(found):
        if c.slug in seen:
            raise ConfigError(
                f"candidates[{seen[c.slug]}] and candidates[{i}] are both named {c.name!r}; "
                "give one a name: {name: ..., optimizer: ...}"
            )
        seen[c.slug] = i
    return found


def task_files(config_dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in config_dirs:  # earlier directories win (a fork's --config-dir before optlab's conf/)
        for f in sorted((Path(d) / "task").glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def load_task(name: str, config_dirs: list[Path], target_override=None) -> Task:
    files = task_files(config_dirs)
    if name not in files:
        raise ConfigError(f"tasks: {name!r} is not a task; choose from {', '.join(sorted(files))} (conf/task/)")
    try:
        node = OmegaConf.load(files[name])
    except Exception as e:  # noqa: BLE001 - YAML and OmegaConf raise many kinds; the file is what matters
        raise ConfigError(f"{files[name]} cannot be read: {' '.join(str(e).split())[:300]}") from None
    overrides = _overrides(f"conf/task/{name}.yaml: overrides", node.get("overrides"))
    target = _plain(target_override) if target_override else _plain(node.get("target"))
    where = "target" if target_override else f"conf/task/{name}.yaml: target"
    if not isinstance(target, dict) or not isinstance(target.get("metric"), str):
        raise ConfigError(f"{where} must be {{metric: val/acc, value: 0.97}}, got {target!r}")
    value = target.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.value={value!r} is invalid: it must be a finite number")
    mode = target.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"{where}.mode={mode!r} is invalid: max (reach at least value) or min (at most)")
    return Task(name, overrides, target["metric"], float(value), mode == "max")


def _overrides(name: str, node) -> list[str]:
    values = _plain(node) or []
    if not isinstance(values, list) or not all(isinstance(o, str) and "=" in o for o in values):
        raise ConfigError(f"{name}={values!r} is invalid: a list of training overrides, e.g. [logger=csv]")
    return values


def _analyses(node) -> list[dict]:
    from hydra.utils import get_method

    found = _plain(node) or []
    for i, entry in enumerate(found if isinstance(found, list) else [None]):
        target = entry.get("_target_") if isinstance(entry, dict) else None
        try:
            get_method(target) if isinstance(target, str) else None
        except Exception:  # noqa: BLE001 - hydra says why in many ways; one line says what to write
            target = None
        if target is None:
            raise ConfigError(
                f"analyses[{i}]={entry!r} is invalid: a mapping with a _target_ function, e.g. "
                "{_target_: optlab.compare.scaling.power_law, data_key: data.num_samples}"
            )
    return found


def _pairs(node, candidates: list[Candidate]) -> list[list[str]] | None:
    """`all` (every pair), a candidate's name (every other one against it: a baseline), a list of
    [A, B] pairs (planned contrasts): the family of tests Holm's adjustment runs over; `none`."""
    value = _plain(node)
    names = [c.name for c in candidates]
    if value is None or value == "all":
        return None
    if value == "none":  # no tests (a scaling study: its fit is the result)
        return []
    if isinstance(value, str):
        if value not in names:
            raise ConfigError(
                f"pairs={value!r} is invalid: not a candidate's name; choose all, none, one of "
                f"{', '.join(map(repr, names))}, or a list of [A, B] pairs"
            )
        return [[value, n] for n in names if n != value]
    ok = isinstance(value, list) and value and all(isinstance(x, list) and len(x) == 2 for x in value)
    if not ok:
        raise ConfigError(f"pairs={value!r} is invalid: all, a candidate's name (a baseline), or [[A, B], ...]")
    for i, (a, b) in enumerate(value):
        for x in (a, b):
            if x not in names:
                raise ConfigError(
                    f"pairs[{i}]={[a, b]!r} is invalid: {x!r} is not a candidate's name; "
                    f"choose from {', '.join(map(repr, names))}"
                )
        if a == b:
            raise ConfigError(f"pairs[{i}]={[a, b]!r} is invalid: a candidate against itself")
    return [[a, b] for a, b in value]


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is invalid: it must be an integer >= {minimum}")
    return value


def default_name(candidates: list[Candidate], tasks: list[Task]) -> str:
    return slug(
        "-vs-".join(c.slug for c in candidates)
        + ("" if [t.name for t in tasks] == ["digits"] else "-on-" + "+".join(t.name for t in tasks))
    )


def protocol(cfg: DictConfig, training_overrides: list[str], config_dirs: list[Path]) -> Protocol:
    """Read and check every protocol key (one line naming the key when one is wrong)."""
    candidates = candidates_of(cfg.get("candidates"))
    tasks_node = _plain(cfg.get("tasks"))
    if isinstance(tasks_node, str):
        tasks_node = [tasks_node]
    if not isinstance(tasks_node, list) or not tasks_node or not all(isinstance(t, str) for t in tasks_node):
        raise ConfigError(f"tasks={tasks_node!r} is invalid: list task names from conf/task/, e.g. tasks=[digits]")
    tasks = [load_task(t, config_dirs, cfg.get("target")) for t in tasks_node]
    tune, ev = cfg.get("tune") or {}, cfg.get("eval") or {}
    n_seeds = _count("eval.seeds", ev.get("seeds"), 1)
    first_seed = _count("eval.first_seed", ev.get("first_seed", 1000), 0)
    val_every = ev.get("every")
    if val_every is not None:
        _count("eval.every", val_every, 1)
    alpha = cfg.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha!r} is invalid: the test's level, a number in (0, 1) such as 0.01")
    test = cfg.get("test")
    if test not in ("permutation", "welch"):
        raise ConfigError(f"test={test!r} is invalid: choose permutation or welch")
    correction = cfg.get("correction", "holm")
    if correction not in ("holm", "none"):
        raise ConfigError(f"correction={correction!r} is invalid: holm (for the family of pairs of a task) or none")
    report = cfg.get("report", True)
    if report not in (True, False, "only"):
        raise ConfigError(f"report={report!r} is invalid: it must be true, false or only")
    name = cfg.get("name") or default_name(candidates, tasks)
    if not isinstance(name, str) or "/" in name:
        raise ConfigError(f"name={name!r} is invalid: use a name without '/'")
    root = cfg.get("root")
    return Protocol(
        name=name,
        dir=Path(str(root)) / name,
        candidates=candidates,
        tasks=tasks,
        trials=_count("tune.trials", tune.get("trials"), 0),
        studies=_count("tune.studies", tune.get("studies"), 1),
        tune_seed=_count("tune.seed", tune.get("seed", 0), 0),
        eval_seeds=[first_seed + i for i in range(n_seeds)],
        val_every=val_every,
        alpha=float(alpha),
        test=test,
        correction=correction,
        report=report,
        metric=str(OmegaConf.select(cfg, "sweep.metric")),
        direction=str(OmegaConf.select(cfg, "sweep.direction")),
        training_overrides=list(training_overrides),
        run_defaults=_overrides("run_defaults", cfg.get("run_defaults")),
        training=_overrides("training", cfg.get("training")),
        analyses=_analyses(cfg.get("analyses")),
        pairs=_pairs(cfg.get("pairs"), candidates),
    )


def default_space(optimizer: DictConfig) -> dict:
    """The search space of an optimizer config: its `search_space`, else lr (and weight decay)
    log-uniform over 3 decades around the defaults."""
    own = optimizer.get("search_space")
    if own is not None:
        return _plain(own)
    space = {}
    lr = optimizer.get("lr")
    if isinstance(lr, (int, float)) and lr > 0:
        space["optimizer.lr"] = {"low": lr / HALF_RANGE, "high": lr * HALF_RANGE, "log": True}
    wd = optimizer.get("weight_decay")
    if isinstance(wd, (int, float)) and not isinstance(wd, bool):
        low, high = (wd / HALF_RANGE, wd * HALF_RANGE) if wd > 0 else (1e-5, 1e-2)
        space["optimizer.weight_decay"] = {"low": low, "high": high, "log": True}
    return space
