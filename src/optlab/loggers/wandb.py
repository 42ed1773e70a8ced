"""W&B logging, offline by default so a run never asks for an account or a network.

On top of Lightning's WandbLogger: the run id and name come from the run directory (one W&B run
per run dir, continued when the run is resumed), multirun jobs are grouped by their sweep, every
metric is plotted against `examples_seen`, and gradients/parameters can be watched.

Quiet: W&B prints nothing itself (no banner, no 28-line history and summary); the run prints one
line at its end saying where the run is (`finish_line`). The mode goes to wandb.init, never into
os.environ (Lightning's own offline switch sets WANDB_MODE for the rest of the process).
"""

import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


class OptlabWandbLogger(WandbLogger):
    """`logger=wandb` (made by `wandb_logger`): Lightning's WandbLogger with `examples_seen` as every
    metric's x-axis, and `watch` / `watch_log_freq` as options that `optlab.run` applies to the model."""

    def __init__(self, *args, watch: str | None = None, watch_log_freq: int = 100, **kwargs):
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns it does nothing
        self._watch, self._watch_log_freq, self._axes_defined = watch, watch_log_freq, False

    @property
    def experiment(self):
        run = super().experiment
        if not self._axes_defined and hasattr(run, "define_metric"):
            run.define_metric("examples_seen")
            run.define_metric("*", step_metric="examples_seen", step_sync=True)
            self._axes_defined = True
        return run

    def watch_model(self, model) -> None:
        if self._watch:
            self.watch(model, log=self._watch, log_freq=self._watch_log_freq)


def wandb_mode(offline: bool | None) -> str:
    """`offline` null (the default): offline, unless the environment says WANDB_MODE=online (or
    disabled); true or false: as told (false after `wandb login` is the explicit opt-in)."""
    if offline is not None:
        return "offline" if offline else "online"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    return env if env in ("online", "disabled") else "offline"


def wandb_logger(
    run_dir: str,
    project: str = "optlab",
    offline: bool | None = None,
    tags=(),
    group: str | None = None,
    watch: str | None = None,
    watch_log_freq: int = 100,
    name: str | None = None,
    **kwargs,
) -> OptlabWandbLogger:
    """`name` (also the run id) defaults to the run folder's name; sweep.py sets <study>-trial-<n>."""
    import wandb

    run = Path(run_dir)
    in_sweep = run.parent.name.startswith("multirun-")
    run_name = name or (f"{run.parent.name}-{run.name}" if in_sweep else run.name)
    kwargs.setdefault("settings", wandb.Settings(silent=True))
    Path(kwargs.get("save_dir") or run).mkdir(parents=True, exist_ok=True)  # else W&B warns it is no git root
    return OptlabWandbLogger(
        name=run_name,
        id=run_name,
        resume="allow",
        project=project,
        offline=False,  # the mode below instead: Lightning's offline=True writes WANDB_MODE into os.environ
        mode=wandb_mode(offline),
        tags=list(tags or []),
        group=group or (run.parent.name if in_sweep else None),
        watch=watch,
        watch_log_freq=watch_log_freq,
        log_model=False,
        **kwargs,
    )


def finish_line(run) -> str | None:
    """The one line a finished run prints about its W&B run (None when W&B is disabled)."""
    settings = run.settings
    if getattr(settings, "mode", "") == "disabled":
        return None
    if settings._offline:
        folders = run_folders(settings.sync_dir)
        if len(folders) > 1:  # a resumed run: W&B writes one folder per process, all with this run's id
            listed = " ".join(str(f) for f in folders)
            return (
                f"W&B offline run {run.id}: {len(folders)} folders, one per process that ran it (resumed); "
                f"upload them together, in order, to the one run: wandb sync {listed}"
            )
        return f"W&B offline run: {settings.sync_dir} (upload: wandb sync {settings.sync_dir})"
    return f"W&B run: {run.url}"


def run_folders(sync_dir: str | Path) -> list[Path]:
    """Every offline folder of the run whose folder is `sync_dir` (its id: the name's last part), oldest
    first: W&B never reuses a folder, so each process that resumed the run added one."""
    sync_dir = Path(sync_dir)
    run_id = sync_dir.name.split("-", 3)[-1] if sync_dir.name.startswith("offline-run-") else None
    if run_id is None:
        return [sync_dir]
    found = [p for p in sync_dir.parent.glob("offline-run-*") if p.is_dir() and p.name.split("-", 3)[-1] == run_id]
    return sorted(found, key=lambda p: p.name) or [sync_dir]
