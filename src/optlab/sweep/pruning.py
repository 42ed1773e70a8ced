"""The Lightning callback a trial trains with: reports to Optuna, prunes, stops on NaN/inf.

It talks to the study's storage itself (storage URL + trial id), so it works the same whether the
trial runs in the sweep worker, in its pool process or in a fresh process (and under DDP, where rank 0
reports and decides and every rank follows). It never raises to stop a trial: it sets
`trainer.should_stop`, so checkpoints, metrics.json and the W&B run are closed as for any run, and
records why in the trial's user attributes, which the worker reads to tell Optuna PRUNED.

- after each validation (sanity check excluded): `trial.report(<metric>, step=epoch)`, then
  `trial.should_prune()` with the study's pruner;
- every `check_every_n_steps` training batches and at each epoch end: is the training loss finite?
  A NaN/inf loss stops the trial (PRUNED, reason recorded) without wasting the rest of the run;
- the worker that started the trial is alive (if it is gone, nobody will record this trial).
"""

from __future__ import annotations

import logging
import math
import os

import torch
from lightning.pytorch import Callback

log = logging.getLogger(__name__)
PRUNE_REASON = "prune_reason"
EPOCHS = "epochs"


class OptunaTrialCallback(Callback):
    """The module docstring's callback, added as `callbacks.optuna_trial` to each trial's config by
    optlab.sweep.objective.configure_trial; `stopped` holds why it stopped the trial, if it did."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_id: int,
        monitor: str,
        pruner=None,
        check_every_n_steps: int = 10,
        worker_pid: int | None = None,
    ):
        self.storage_url, self.study_name, self.trial_id = storage, study_name, int(trial_id)
        self.monitor, self.pruner_cfg = monitor, pruner
        self.check_every_n_steps = max(int(check_every_n_steps), 1)
        self.worker_pid = worker_pid
        self._trial = None
        self.stopped: str | None = None

    # -- storage (opened lazily in each process: the callback may be pickled to spawned ranks) --
    def _open(self):
        if self._trial is None:
            import optuna
            from hydra.utils import instantiate

            from optlab.sweep.study import make_storage

            pruner = self.pruner_cfg
            if pruner is not None and not isinstance(pruner, optuna.pruners.BasePruner):
                pruner = instantiate(pruner)
            study = optuna.load_study(
                study_name=self.study_name,
                storage=make_storage(self.storage_url, existing=True),
                pruner=pruner,
                sampler=optuna.samplers.RandomSampler(),
            )
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def __getstate__(self):
        return {**self.__dict__, "_trial": None}

    def _stop(self, trainer, reason: str) -> None:
        self.stopped = reason
        trainer.should_stop = True
        trainer.fit_loop.min_epochs = 0  # min_epochs would otherwise keep a stopped trial training
        trainer.fit_loop.epoch_loop.min_steps = 0
        if trainer.is_global_zero:
            self._open().set_user_attr(PRUNE_REASON, reason)

    # -- hooks --
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stopped or (trainer.global_step % self.check_every_n_steps):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._check_finite(trainer, loss, f"step {trainer.global_step}")
        if self.worker_pid and not _alive(self.worker_pid):
            log.error("the sweep worker (pid %s) is gone; stopping this orphaned trial", self.worker_pid)
            os._exit(3)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.stopped:
            self._check_finite(trainer, trainer.callback_metrics.get("train/loss"), f"epoch {trainer.current_epoch}")

    def _check_finite(self, trainer, loss, where: str) -> None:
        if not isinstance(loss, torch.Tensor):
            return
        bad = not bool(torch.isfinite(loss.detach()).all())
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)  # any rank diverged: all stop
        if bad:
            value = loss.detach().float().reshape(-1)[0].item() if loss.numel() else float("nan")
            self._stop(trainer, f"non-finite training loss ({value}) at {where}")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.stopped:
            return
        decision, reason = False, None
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                value = float(value)
                epoch = trainer.current_epoch
                trial = self._open()
                if math.isfinite(value):
                    trial.report(value, step=epoch)
                    if trial.should_prune():
                        decision = True
                        name = type(trial.study.pruner).__name__
                        reason = f"{name} at epoch {epoch} ({self.monitor}={value:.4f})"
        decision = trainer.strategy.broadcast(decision, src=0)
        if decision:
            self._stop(trainer, reason or "pruned")

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._open().set_user_attr(EPOCHS, trainer.fit_loop.epoch_progress.current.completed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
