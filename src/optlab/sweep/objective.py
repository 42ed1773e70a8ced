"""A sweep trial is a launch.Job (optlab.launch) whose config also gets the study's Lightning
callback and W&B grouping: `configure_trial` is the job's `configure` hook, run in whichever
process trains the trial (`sweep.process`: pool, subprocess, inline; see optlab.launch.process).

The callback talks to the study's storage itself (reports, pruning, NaN), so the trial needs no
channel back to its worker but its run dir's `outcome.json`; it logs to `trial.log` there.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf, open_dict

from optlab.launch import Job

LOG_FILE = "trial.log"


def trial_job(
    overrides: list[str],
    run_dir: Path,
    monitor: str,
    wandb_group: str | None = None,
    wandb_name: str | None = None,
    threads: int | None = None,
    inline: bool = False,
    **callback,
) -> Job:
    """The job of one trial (or re-run). `callback`: storage, study_name, trial_id, pruner,
    check_every_n_steps, worker_pid of OptunaTrialCallback; none for a re-run (no study to report to)."""
    return Job(
        overrides=list(overrides),
        run_dir=str(run_dir),
        threads=threads,
        log_file=None if inline else str(Path(run_dir) / LOG_FILE),
        configure=f"{__name__}.configure_trial",
        options={"wandb_group": wandb_group, "wandb_name": wandb_name, "monitor": monitor, **callback},
    )


def configure_trial(cfg, wandb_group=None, wandb_name=None, monitor="val/acc_best", trial_id=None, **callback) -> None:
    with open_dict(cfg):
        if OmegaConf.select(cfg, "logger.wandb._target_") is not None:
            cfg.logger.wandb.group = wandb_group or cfg.logger.wandb.get("group")
            cfg.logger.wandb.name = wandb_name
        if trial_id is not None:
            if cfg.get("callbacks") is None:
                cfg.callbacks = {}
            cfg.callbacks.optuna_trial = {
                "_target_": "optlab.sweep.pruning.OptunaTrialCallback",
                "trial_id": trial_id,
                "monitor": monitor,
                **callback,
            }
