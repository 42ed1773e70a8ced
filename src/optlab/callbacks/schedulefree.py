"""`ScheduleFreeModes`: what a schedule-free optimizer needs from the training loop, added by
train.py whenever the optimizer has `train()`/`eval()` (optimizer=adamw_schedulefree, sgd_schedulefree).

Such an optimizer holds y (where gradients are taken) in the weights while training and x (the
average, the weights to use) after `eval()`. Forgetting the switch is the classic mistake: val/acc
then measures y, and checkpoints save y. This callback calls `eval()` before every validation,
test and prediction and when training ends (so the checkpoints, written after validation, and the
test hold x), and `train()` before each training batch. BatchNorm statistics were gathered for y,
so on each switch to x they are recomputed from `bn_batches` training batches (as a cumulative
average, the RNG states kept), and the training ones are put back when training resumes.
"""

import random

import numpy as np
import torch
from lightning.pytorch import Callback
from torch import nn


def is_schedule_free(optimizer_class) -> bool:
    return callable(getattr(optimizer_class, "train", None)) and callable(getattr(optimizer_class, "eval", None))


class ScheduleFreeModes(Callback):
    def __init__(self, bn_batches: int = 10):
        if not (isinstance(bn_batches, int) and bn_batches >= 0):
            raise ValueError(f"callbacks.schedulefree.bn_batches={bn_batches!r} must be an integer >= 0")
        self.bn_batches = bn_batches
        self._training_stats: dict[str, torch.Tensor] | None = None  # y's BatchNorm buffers, while x is in

    @staticmethod
    def _optimizers(trainer) -> list:
        return [o for o in trainer.optimizers if is_schedule_free(type(o))]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        for optimizer in self._optimizers(trainer):
            optimizer.train()
        if self._training_stats is not None:
            pl_module.load_state_dict(self._training_stats, strict=False)
            self._training_stats = None

    def _to_eval(self, trainer, pl_module) -> None:
        switched = False
        for optimizer in self._optimizers(trainer):
            switched |= any(g.get("train_mode") for g in optimizer.param_groups)
            optimizer.eval()
        if switched and self.bn_batches:
            self._recompute_batchnorm(trainer, pl_module)

    on_validation_start = on_test_start = on_predict_start = on_train_end = _to_eval

    @torch.no_grad()
    def _recompute_batchnorm(self, trainer, pl_module) -> None:
        norms = [m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        norms = [m for m in norms if m.track_running_stats and m.running_mean is not None]
        if not norms or trainer.datamodule is None:
            return
        names = {id(b): n for n, b in pl_module.named_buffers()}
        self._training_stats = {names[id(b)]: b.clone() for m in norms for b in m.buffers()}
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        was_training = pl_module.training
        pl_module.train()
        states = torch.get_rng_state(), random.getstate(), np.random.get_state()
        try:
            for i, batch in enumerate(trainer.datamodule.train_dataloader()):
                if i == self.bn_batches:
                    break
                x, _ = trainer.strategy.batch_to_device(batch)  # with the data module's transfer hooks
                pl_module(x)
        finally:
            torch.set_rng_state(states[0])
            random.setstate(states[1])
            np.random.set_state(states[2])
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            pl_module.train(was_training)
