"""What `python compare.py` does: check everything, tune every candidate on every task with the
same budget, re-run each study's best configuration with fresh seeds, report.

Layout under `<root>/<name>/` (resumable: run the same command again; nothing finished re-runs; several workers may run the same
command on one folder at once and share the work):
    protocol.json                 what was asked (a resume with other settings is refused)
    tune.db                       the Optuna studies (sweep.py's machinery: storage, pruning, retries)
    tune/<task>/<candidate>/s<k>/trial-NNNN/     tuning runs (study k = sampler seed tune.seed + k)
    eval/<task>/<candidate>/s<k>/seed-<seed>/    re-runs: outcome.json, curves.jsonl, fit.json
    eval/<task>/<candidate>/s<k>/seed-<seed>.lock  held by the worker running it (workers.py)
    report.md, report.html, *.png  (optlab.compare.report)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from optlab import launch, strict_json
from optlab.compare import curve, stats, workers
from optlab.compare.config import Candidate, Protocol, Task, default_space, protocol
from optlab.launch.job import Job
from optlab.sweep import driver
from optlab.sweep.space import SearchSpace
from optlab.validate import ConfigError

PROTOCOL_FILE = "protocol.json"
REPORT_KEYS = ("report", "analyses", "alpha", "test", "correction", "pairs")  # they change the report, not what runs
RUN_LOG = "run.log"
WAIT_S = 5.0  # how often a worker looks again at re-runs other workers hold


@dataclass
class StudySettings(driver.Settings):
    """A tuning study of one candidate on one task: sweep.py's settings, with runs that record curves."""

    val_every: int | None = None

    def job(self, overrides: list[str], run_dir: Path, wandb_name: str, **callback) -> Job:
        job = super().job(overrides, run_dir, wandb_name, **callback)
        job.configure = f"{curve.__name__}.configure_run"
        job.options = {**job.options, "run_dir": str(run_dir)}
        return job

    def launch(self, job: Job, **kwargs) -> dict:
        outcome = super().launch(job, **kwargs)
        fit = curve.read_fit(Path(job.run_dir)) or {}
        RUN_SECONDS.append((outcome.get("wall_s") or 0.0, fit.get("fit_s", 0.0)))
        return outcome


RUN_SECONDS: list[tuple[float, float]] = []  # (wall, fit) of each run this process launched: its cost line


@dataclass
class Cell:
    """One candidate on one task, study k: its settings, then what it became."""

    task: Task
    candidate: Candidate
    study: int
    settings: StudySettings
    tuned: bool

    @property
    def key(self) -> str:
        return f"{self.task.name}/{self.candidate.slug}/s{self.study}"


def dedupe(overrides: list[str]) -> list[str]:
    """Later overrides of a key replace earlier ones (task < command line < candidate)."""
    last = {}
    for o in overrides:
        last[o.split("=", 1)[0].lstrip("+~")] = o
    return [o for o in overrides if last[o.split("=", 1)[0].lstrip("+~")] is o]


def study_settings(
    cfg: DictConfig, p: Protocol, task: Task, cand: Candidate, k: int, search_path: list[str]
) -> StudySettings:
    c = cfg.copy()
    with open_dict(c):
        c.n_trials = max(p.trials, 1)
        c.study_name = f"{p.name}.{task.name}.{cand.slug}.s{k}"
        c.report = False
        c.sweep.top_k, c.sweep.rerun_seeds = 0, 0
        c.sweep.dir = str(p.dir / "tune" / task.name / cand.slug / f"s{k}")
        if c.sweep.get("sampler") is not None and "seed" in c.sweep.sampler:
            c.sweep.sampler.seed = p.tune_seed + k
    base = driver.settings(c, [], search_path)
    s = StudySettings(**{f.name: getattr(base, f.name) for f in fields(driver.Settings)}, val_every=None)
    search_path_overrides = [o for o in s.training_overrides if o.startswith("hydra.searchpath=")]
    s.training_overrides = dedupe(
        [*search_path_overrides, *p.run_defaults, *task.overrides, *p.training, *p.training_overrides, *cand.overrides]
    )
    space = cand.space if cand.space is not None else default_space(driver.compose(s.training_overrides).optimizer)
    s.space = SearchSpace.from_config(space) if space else SearchSpace([])  # {}: run as given
    return s


def plan(cfg: DictConfig, p: Protocol, search_path: list[str], check: bool = True) -> list[Cell]:
    """Every (task, candidate, study), checked (unless `check` is false: a report of a stored
    comparison): each composes and validates at every corner of its search space, so a typo in
    any candidate fails before the first run."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from optlab.cli import _explain

    cells = []
    for task in p.tasks:
        for cand in p.candidates:
            where = f"candidate {cand.name!r} on task {task.name}"
            for k in range(p.studies):
                try:
                    s = study_settings(cfg, p, task, cand, k, search_path)
                    if check:
                        driver.check_training(s)
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                except (ConfigCompositionException, OverrideParseException) as e:
                    raise ConfigError(f"{where}: {_explain(e, cand.overrides)}") from None
                cells.append(Cell(task, cand, k, s, p.trials > 0 and bool(s.space.params)))
    return cells


def check_resume(p: Protocol) -> None:
    """A comparison resumes only with the settings it ran with; those that only change the
    report (REPORT_KEYS) may change, and are stored for report=only."""
    mine = {k: v for k, v in _protocol_record(p).items() if k not in REPORT_KEYS}
    path = p.dir / PROTOCOL_FILE
    if path.is_file():
        stored = {k: v for k, v in json.loads(path.read_text()).items() if k not in (*REPORT_KEYS, "dir")}
        if mine["eval_seeds"][: len(stored.get("eval_seeds", []))] == stored.get("eval_seeds"):
            stored["eval_seeds"] = mine["eval_seeds"]  # more seeds for a claim: the runs done are kept
        if stored != mine:
            diff = ", ".join(k for k in mine if stored.get(k) != mine[k])
            raise ConfigError(
                f"comparison {p.name} in {p.dir} was run with other settings ({diff} differ); repeat "
                "its command to resume it (eval.seeds may grow), or start a new one with name=<new name>"
            )
    p.dir.mkdir(parents=True, exist_ok=True)
    workers.write_text(path, strict_json.dumps(_protocol_record(p), indent=2))


def _protocol_record(p: Protocol) -> dict:
    """Its settings; not where it lives (a comparison folder may move, e.g. from a cluster)."""
    record = asdict(p)
    del record["dir"]
    return record


def load_protocol(root: Path, name: str) -> Protocol:
    path = Path(root) / name / PROTOCOL_FILE
    if not path.is_file():
        raise ConfigError(f"no comparison named {name!r} under {root}: run it first, or pass root=... and name=...")
    record = json.loads(path.read_text())
    record["dir"] = path.parent  # where it is now, not where it ran
    record["candidates"] = [Candidate(**c) for c in record["candidates"]]
    record["tasks"] = [Task(**t) for t in record["tasks"]]
    return Protocol(**record)


def tune(cell: Cell, p: Protocol) -> None:
    s = cell.settings
    if not cell.tuned:
        return
    study = driver.open_study(s)
    print(
        f"[compare] tune {cell.key}: {p.trials} trials of {', '.join(q.name for q in s.space.params)} "
        f"(study {s.study_name}, sampler seed {p.tune_seed + cell.study})",
        flush=True,
    )
    driver.work(study, s)
    print(driver.summary_line(study, s), flush=True)


def eval_dir(p: Protocol, cell: Cell, seed: int) -> Path:
    return p.dir / "eval" / cell.task.name / cell.candidate.slug / f"s{cell.study}" / f"seed-{seed}"


def finished(run_dir: Path) -> bool:
    """A re-run with its result: a fit, or a failure that is the candidate's. A config failure is
    not (every config was validated before anything ran, so the code or configs changed under the
    comparison): a resume runs it again."""
    outcome = launch.read_outcome(run_dir)
    if outcome is None or outcome["status"] == "config":
        return False
    return outcome["status"] != "ok" or curve.read_fit(run_dir) is not None


def best_overrides(cell: Cell) -> list[str] | None:
    """The study's best configuration (none for an untuned candidate); None when tuning failed."""
    from optlab.compare.results import tuning_of

    if not cell.tuned:
        return []
    tuning = tuning_of(cell)
    if tuning.best_value is None:
        print(f"[compare] {cell.key}: not evaluated: {tuning.failure}", flush=True)
        return None
    return tuning.best_overrides


def evaluate(cells: list[Cell], p: Protocol) -> None:
    """Each cell's best configuration with each fresh seed. Re-runs other workers hold (workers.py)
    are waited for; one whose worker died is run here."""
    todo = [
        (cell, params, seed) for cell in cells if (params := best_overrides(cell)) is not None for seed in p.eval_seeds
    ]
    said = False
    while todo := [t for t in todo if not evaluate_seed(*t, p)]:
        if not said:
            print(f"[compare] waiting for {len(todo)} re-run(s) other workers hold", flush=True)
            said = True
        time.sleep(WAIT_S)


def evaluate_seed(cell: Cell, params: list[str], seed: int, p: Protocol) -> bool:
    """Run one re-run unless it is finished or another worker holds it; True once it is finished."""
    from optlab.rundirs import run_id

    run_dir = eval_dir(p, cell, seed)
    if finished(run_dir):
        return True
    with workers.holding(run_dir) as mine:
        if not mine:
            return False
        if finished(run_dir):  # finished by another worker between the check and the lock
            return True
        if run_dir.exists():  # a killed run (or a config failure): keep it aside, start the seed again
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.killed-{run_id()}"))
        s = cell.settings
        job = Job(
            overrides=[*s.training_overrides, *params, f"seed={seed}", "test=true"],
            run_dir=str(run_dir),
            threads=s.threads,
            log_file=None if s.process == "inline" else str(run_dir / RUN_LOG),
            configure=f"{curve.__name__}.configure_run",
            options={
                "run_dir": str(run_dir),
                "val_every": p.val_every,
                "monitor": s.metric,
                "wandb_group": p.name,
                "wandb_name": f"{cell.key}/seed-{seed}".replace("/", "-"),
            },
        )
        outcome = s.launch(job)
    metric = (outcome.get("metrics") or {}).get(s.metric)
    shown = f"{s.metric}={metric:.4f}" if isinstance(metric, float) else f"{outcome['status']}: {outcome['reason']}"
    print(f"[compare] eval {cell.key} seed {seed}: {shown} ({outcome.get('wall_s', 0):.1f} s) | {run_dir}", flush=True)
    return True


def cost_line(cost: dict) -> str:
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in cost["phases_s"].items())
    wall = cost["wall_s"] or 1.0
    outside = f"outside training (also each run's config, build and test pass): {1 - cost['fit_s'] / wall:.1%}"
    if "runs_s" not in cost:  # recorded before the runs' own time was
        return f"{cost['wall_s']:.1f} s wall ({phases}), {cost['fit_s']:.1f} s of it training (fit); {outside}"
    return (
        f"{cost['wall_s']:.1f} s wall ({phases}); the runs took {cost['runs_s']:.1f} s of it, {cost['fit_s']:.1f} s "
        f"of that training (fit). The protocol's own cost (startup, planning, storage, hand-offs, report): "
        f"{1 - cost['runs_s'] / wall:.1%}; {outside}"
    )


def run(cfg: DictConfig, training: list[str]) -> None:
    """compare.py's Hydra task; `training`: the command line's training overrides (split_command_line)."""
    from optlab.run import CONFIG_DIR, command_line_job

    command = command_line_job()
    search_path = [f"file://{command.config_dir}"] if command.config_dir else []
    config_dirs = [Path(d) for d in (command.config_dir, CONFIG_DIR) if d]
    try:
        compare(cfg, training, search_path, config_dirs)
    finally:
        launch.shutdown_pool()


def compare(cfg: DictConfig, training: list[str], search_path: list[str], config_dirs: list[Path]) -> None:
    """`cfg`: compare.yaml composed with the protocol's overrides; `training`: the training overrides
    of the command line, applied to every run of every task (composed per task, not here)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    from optlab.compare.report import write_report
    from optlab.run import process_seconds

    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    marks = [("startup", process_seconds())]  # Python, Hydra, imports
    RUN_SECONDS.clear()
    if cfg.get("report") == "only":
        p = load_protocol(Path(str(cfg.root)), cfg.get("name") or "")
        cells = plan(_stored_cfg(cfg, p), p, search_path, check=False)
        write_report(p, cells)
        return
    p = protocol(cfg, training, config_dirs)
    cfg = _stored_cfg(cfg, p)
    if cfg.sweep.get("process", "auto") in ("auto", "pool"):  # its imports overlap the planning below
        launch.warm_pool(cfg.sweep.get("trials_per_process"))
    clock = _Clock(marks)
    cells = plan(cfg, p, search_path)
    check_resume(p)
    clock.mark("plan")
    print(
        f"[compare] {p.name}: {len(p.candidates)} candidates x {len(p.tasks)} tasks x {p.studies} studies, "
        f"{p.trials} tuning trials and {len(p.eval_seeds)} seeds each; in {p.dir}/",
        flush=True,
    )
    power = stats.why_no_winner_is_possible(
        len(p.eval_seeds) * p.studies, len(p.tested_pairs()), p.alpha, p.test, p.correction
    )
    if power:  # descriptive results may be all the user wants; say it before the compute, not after
        print(f"[compare] warning: {power}", flush=True)
    for cell in cells:
        tune(cell, p)
    clock.mark("tune")
    evaluate(cells, p)
    clock.mark("eval")
    runs = [sum(v) for v in zip(*RUN_SECONDS)] or [0.0, 0.0]
    ran = bool(RUN_SECONDS)  # a resume with nothing left to run keeps the cost of the last one that ran
    if p.report:
        write_report(p, cells, clock.cost(*runs) if ran else None)  # its own time is not in its cost line...
    clock.mark("report")
    cost = clock.cost(*runs)  # ...but is in cost.json and here
    if ran or not (p.dir / "cost.json").is_file():
        workers.write_text(p.dir / "cost.json", strict_json.dumps(cost))
    print(f"[compare] cost: {cost_line(cost)}", flush=True)


class _Clock:
    """Seconds per phase of this invocation, from the process start (startup: Python, Hydra, imports)."""

    def __init__(self, marks: list):
        self.marks, self.last = marks, time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.marks.append((phase, round(now - self.last, 2)))
        self.last = now

    def cost(self, runs: float, fit: float) -> dict:
        wall = sum(v for _, v in self.marks) + time.perf_counter() - self.last
        return {
            "wall_s": round(wall, 2),
            "runs_s": round(runs, 2),
            "fit_s": round(fit, 2),
            "phases_s": dict(self.marks),
        }


def _stored_cfg(cfg: DictConfig, p: Protocol) -> DictConfig:
    """The config the studies are built from; storage is per comparison."""
    c = cfg.copy()
    with open_dict(c):
        c.storage = OmegaConf.select(cfg, "storage") or f"sqlite:///{p.dir}/tune.db"
    return c
