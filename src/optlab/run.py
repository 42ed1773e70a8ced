"""Compose -> validate -> instantiate -> fit/test -> metrics. What train.py and sweep.py call.

To run: `python train.py` (see README.md); from Python: `train(compose_config(["optimizer=adamw"]))`.
This is the only module that reads or changes Hydra's global state (its initialized config
search path and the run-time `HydraConfig`); everything else is handed plain configs.
"""

import contextlib
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary, ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from optlab import console_log, noise, strict_json
from optlab.callbacks.schedulefree import ScheduleFreeModes, is_schedule_free
from optlab.callbacks.summary import LayerSummary
from optlab.launch import Job, external_layout
from optlab.loggers.resume import ResumedLogs
from optlab.loggers.steps import scalar_metrics
from optlab.rundirs import new_run, register_resolvers
from optlab.validate import ConfigError, instantiable, validate


def _config_dir() -> Path:
    """The configs: a wheel ships them inside the package (optlab/conf/); a clone or an editable
    install reads the repository's conf/."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


CONFIG_DIR = _config_dir()
METRICS_FILE = "metrics.json"
log = logging.getLogger(__name__)
register_resolvers()
# conf/hydra/launcher/*.yaml carry the launcher plugins' own names on purpose: Hydra then checks
# them against the plugins' schemas (a wrong type fails at composition), and says so each time.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def compose_config(
    overrides: list[str] = (),
    run_dir: str | Path | None = None,
    config_dir: Path = CONFIG_DIR,
    config_name: str = "train",
) -> DictConfig:
    """The config `python train.py <overrides>` would see, for tests, notebooks and sweeps; each
    call is a new run (a fresh run id and directory) unless it resumes or `run_dir` is given.

    Works inside a Hydra app too (sweep.py, a `-m` job): its initialized Hydra is put back after.
    Hydra's run-time config is left set to this one (`paths.run_dir` resolves through it); wrap
    the call in `hydra_config_kept()` to put the caller's back when done."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    new_run()
    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().hydra = saved
    with open_dict(cfg):  # what Hydra fills in at run time
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.output_dir = str(run_dir or cfg.hydra.run.dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


@contextlib.contextmanager
def hydra_config_kept():
    """Put Hydra's run-time config back as it was (a job composed and ran in between)."""
    saved = HydraConfig.instance().cfg
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved


def hydra_node() -> DictConfig:
    """The `hydra` node of the config composed last (its launcher, choices, run dir)."""
    return HydraConfig.get()


def reset_hydra() -> None:
    """Leave Hydra as a fresh process has it (before @hydra.main starts the real command)."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


def command_line_job() -> Job:
    """This Hydra app's command as a Job: its overrides, config name and --config-dir, run dir."""
    hc = HydraConfig.get()
    config_dir = next(
        (src.path for src in hc.runtime.config_sources if src.provider == "command-line" and src.schema == "file"), None
    )
    search_path = [o for o in hc.overrides.hydra if o.startswith(("hydra.searchpath", "hydra.job.chdir"))]
    return Job(
        overrides=[*search_path, *hc.overrides.task],
        run_dir=hc.runtime.output_dir,
        config_name=hc.job.config_name,
        config_dir=config_dir,
    )


def _one_line(e: BaseException) -> str:
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return text[0] if len(text) == 1 else " ".join(line.strip() for line in text if line.strip())


def _scaled_lr(cfg: DictConfig, datamodule, trainer) -> dict:
    """{"lr": ...} when `optimizer.lr_scaling.rule` scales it (and a line saying so), else {}."""
    from optlab.optim.lr_scaling import global_batch_size, scaled_lr

    scaling = OmegaConf.select(cfg, "optimizer.lr_scaling") or {}
    rule, base = scaling.get("rule", "none"), scaling.get("base_batch_size", 256)
    if rule == "none":
        return {}
    batch = getattr(datamodule, "batch_size", None)
    if not isinstance(batch, int) or not isinstance(cfg.optimizer.get("lr"), int | float):
        raise ValueError(
            "optimizer.lr_scaling needs optimizer.lr and the data module's `batch_size`; set optimizer.lr_scaling.rule=none"
        )
    total = global_batch_size(batch, trainer)
    lr = scaled_lr(cfg.optimizer.lr, total, rule, base)
    if trainer.is_global_zero:
        print(
            f"lr {lr:.4g}: optimizer.lr {cfg.optimizer.lr:g} scaled by the {rule} rule, global batch {total} / {base}"
        )
    return {"lr": lr}


def _instantiate_all(cfg: DictConfig):
    """Build every object of the run; config mistakes surface here as ConfigError (one line)."""
    try:
        datamodule = instantiate(cfg.data)
        scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
        if not loggers:  # Lightning refuses a LearningRateMonitor with nothing to log to
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        if not cfg.trainer.get("enable_progress_bar", True):  # ...and a progress bar it was told not to show
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        if is_schedule_free(get_object(cfg.optimizer._target_)) and not any(
            isinstance(c, ScheduleFreeModes) for c in callbacks
        ):
            callbacks.append(ScheduleFreeModes())  # the optimizer's train()/eval() around evaluation
        if cfg.trainer.get("enable_model_summary", True) and not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(LayerSummary())  # layers, not metric objects; Lightning then adds none of its own
        trainer = instantiate(
            instantiable(cfg.trainer, "trainer"),
            strategy=instantiate(cfg.strategy),
            callbacks=callbacks,
            logger=loggers or False,
        )
        # Without compare.py's `search_space` and the lr scaling rule, with the lr for this run's
        # global batch (known now that the Trainer knows its processes), and with plain lists:
        # optimizers that keep `betas`/`etas` as given (torch's NAdam, Rprop) would pickle a
        # ListConfig into checkpoints, which the safe loader then refuses.
        optimizer = instantiate(
            instantiable(cfg.optimizer, "optimizer"), _convert_="all", **_scaled_lr(cfg, datamodule, trainer)
        )
        model = instantiate(
            cfg.model,
            optimizer=optimizer,
            scheduler=scheduler,
            _convert_="all",
            **({"channels_last": True} if cfg.trainer.get("channels_last") else {}),  # a fork's module may lack it
        )
    except (InstantiationException, ValueError, FileNotFoundError, TypeError) as e:
        raise ConfigError(_one_line(e)) from e
    return datamodule, model, trainer


def _finish_wandb(failed: bool) -> None:
    # Lightning never ends a W&B run; a run left open would swallow the next job's metrics (-m).
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        from optlab.loggers.wandb import finish_line

        line = finish_line(wandb.run)
        wandb.finish(exit_code=1 if failed else 0)
        if line:
            print(line, flush=True)


@contextlib.contextmanager
def environment_kept():
    """os.environ as it was after the block: Lightning (PL_GLOBAL_SEED), W&B (WANDB_SERVICE) and
    libraries imported on the way (KMP_*) set variables a notebook's next run would inherit."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and test) as configured; returns the final metrics and writes metrics.json."""
    with environment_kept():
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    validate(cfg)
    noise.quiet_known_noise()
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model, trainer = _instantiate_all(cfg)
    trainer.callbacks.append(ResumedLogs())  # a resume drops the log rows it will write again
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if hasattr(logger, "watch_model"):
            logger.watch_model(model)
    if cfg.get("tune"):  # tune=lr_find / batch_size: Lightning's Tuner in place of training
        try:
            found = instantiate(cfg.tune)(trainer, model, datamodule, run_dir=str(cfg.paths.run_dir))
        finally:
            _finish_wandb(False)
        return {key: float(value) for key, value in found.items() if value is not None}
    failed = True
    try:
        metrics: dict[str, float] = {}
        tested = None
        if cfg.get("train", True):
            fit_start = time.perf_counter()
            # weights_only stated: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD changes only torch's default.
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            metrics.update(scalar_metrics(trainer.callback_metrics))
            metrics["fit_time_s"] = time.perf_counter() - fit_start
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            best = best or (cfg.get("ckpt_path") if not cfg.get("train", True) else None)  # train=false: the given one
            # verbose=False: the run's own table below shows test/* once, not Lightning's table too
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
            metrics.update(scalar_metrics(trainer.callback_metrics))
            tested = best or "the weights as trained (no checkpoint)"
        failed = False
    finally:
        _finish_wandb(failed)
    metrics["wall_time_s"] = time.perf_counter() - start
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / METRICS_FILE).write_text(strict_json.dumps(metrics, indent=2, sort_keys=True))
        print_summary(metrics, run_dir, tested)
    return metrics


# in the lines under the table, or one batch's value (the epoch lines and train/loss say more)
NOT_IN_TABLE = ("fit_time_s", "wall_time_s", "peak_rss_mb", "train/loss_step")


def print_summary(metrics: dict[str, float], run_dir: Path, tested: str | None = None) -> None:
    """The run's one final table: its metrics (not the per-layer gradient and lr series, which are
    in the logs), then where the time went, then the run dir and the checkpoint tested."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if not key.startswith(("grad_norm/", "grad_to_weight/", "lr-")) and key not in NOT_IN_TABLE:
            table.add_row(key, _shown(metrics[key]))
    console = Console()
    console.print(table)
    fit = f"training (fit, validation included) {metrics['fit_time_s']:.1f} s; " if "fit_time_s" in metrics else ""
    console.print(
        f"time: {fit}this run {metrics['wall_time_s']:.1f} s; the whole command so far {process_seconds():.1f} s "
        f"(Python start, imports, setup); peak memory {metrics['peak_rss_mb']:.0f} MB",
        soft_wrap=True,
    )
    if tested and Path(tested).is_relative_to(run_dir):
        tested = str(Path(tested).relative_to(run_dir))
    # soft_wrap: a long path stays one copyable line
    console.print(f"run dir: {run_dir}" + (f"  (tested {tested})" if tested else ""), soft_wrap=True)


def _shown(value: float) -> str:
    """Counts as integers (examples_seen 1169, not 1169.0000), large values with 1 decimal, the rest 4."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def process_seconds() -> float:
    """How long this process has run (Linux /proc; 0 elsewhere)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        return round(float(Path("/proc/uptime").read_text().split()[0]) - started, 2)
    except (OSError, ValueError, IndexError):
        return 0.0


# -- multirun + multi-process strategies --------------------------------------------------------


def _process_count(devices) -> int:
    """How many processes Lightning starts for trainer.devices (int, -1, "auto", "0,1" or a list)."""
    import torch

    if devices in (-1, "-1") or (devices == "auto" and torch.cuda.is_available()):
        return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else os.cpu_count() or 1
    if devices == "auto":
        return 1  # CPU: one process
    if isinstance(devices, str):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return len(devices) if OmegaConf.is_list(devices) or isinstance(devices, list) else int(devices)


def relaunches_argv(cfg: DictConfig) -> bool:
    """True when Lightning would start the other ranks by re-running this command line."""
    if "LOCAL_RANK" in os.environ or external_layout() is not None:  # a rank of a group already started
        return False
    devices = OmegaConf.select(cfg, "trainer.devices")
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if _process_count(devices) * nodes <= 1:
        return False
    return OmegaConf.select(cfg, "strategy.start_method", default="popen") not in ("spawn", "fork", "forkserver")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> dict[str, float]:
    """What train.py's Hydra task does: one run, or one job of a multirun (which leaves its outcome).

    A multirun job that starts several processes runs as a fresh single run in its own process
    group: Lightning's subprocess DDP re-runs sys.argv, and under `-m` that would re-run the whole
    multirun in every rank."""
    if not in_multirun():
        with console_log.teed(Path(cfg.paths.run_dir) / "train.log"):  # the run's log: what the console shows
            return train(cfg)
    from optlab import launch

    job = command_line_job()
    if relaunches_argv(cfg):
        validate(cfg)
        outcome = launch.run(job, "subprocess")
    else:
        outcome = launch.run_here(job, cfg=cfg, reraise=True)
    if outcome["status"] == "config":
        raise ConfigError(outcome["reason"])
    if outcome["status"] != "ok":
        raise RuntimeError(
            f"job {HydraConfig.get().job.num} ({' '.join(job.overrides)}) failed: {outcome['reason']}; "
            f"its log is in {job.run_dir}"
        )
    return outcome["metrics"]


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name or cfg.get("tune"):  # a tuner's run reports what it found, not a training metric
        return None
    if name not in metrics:
        message = f"optimized_metric={name} was not logged; logged: {', '.join(sorted(metrics))}"
        if in_multirun():  # a sweep cannot rank this job: stop it rather than report a made-up value
            raise ConfigError(message)
        log.warning("%s (a single run does not need it; sweeps do)", message)
        return None
    return metrics[name]
