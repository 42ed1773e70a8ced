"""W&B logging, offline by default so a run never asks for an account or a network.

On top of Lightning's WandbLogger: the run id and name come from the run directory (one W&B run
per run dir, continued when the run is resumed), multirun jobs are grouped by their sweep, every
metric is plotted against `examples_seen`, and gradients/parameters can be watched.
"""

from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


class OptlabWandbLogger(WandbLogger):
    def __init__(self, *args, watch: str | None = None, watch_log_freq: int = 100, **kwargs):
        super().__init__(*args, **kwargs)
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


def wandb_logger(
    run_dir: str,
    project: str = "optlab",
    offline: bool = True,
    tags=(),
    group: str | None = None,
    watch: str | None = None,
    watch_log_freq: int = 100,
    name: str | None = None,
    **kwargs,
) -> OptlabWandbLogger:
    """`name` (also the run id) defaults to the run folder's name; sweep.py sets <study>-trial-<n>."""
    run = Path(run_dir)
    in_sweep = run.parent.name.startswith("multirun-")
    run_name = name or (f"{run.parent.name}-{run.name}" if in_sweep else run.name)
    return OptlabWandbLogger(
        name=run_name,
        id=run_name,
        resume="allow",
        project=project,
        offline=offline,
        tags=list(tags or []),
        group=group or (run.parent.name if in_sweep else None),
        watch=watch,
        watch_log_freq=watch_log_freq,
        log_model=False,
        **kwargs,
    )
