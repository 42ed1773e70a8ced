"""Callbacks that tests add from the command line: `+callbacks.x._target_=helpers.Name`."""

import os
import signal
from pathlib import Path

import torch
from lightning.pytorch import Callback


def full_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers, gathered whole when sharded (DTensor under FSDP2)."""
    out = {}
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        t = t.detach()
        out[name] = (t.full_tensor() if hasattr(t, "full_tensor") else t).cpu().clone()
    return out


class DumpWeights(Callback):
    """Each rank writes its final weights to <dir>/rank<k>.pt."""

    def __init__(self, dir: str):
        self.dir = Path(dir)

    def on_train_end(self, trainer, pl_module) -> None:
        state = full_state(pl_module)
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.dir / f"rank{trainer.global_rank}.pt")


class KillAt(Callback):
    """SIGKILL the process at a given (epoch, batch): a crash no Python code can clean up after."""

    def __init__(self, epoch: int, batch: int = 0):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class RaiseAt(Callback):
    def __init__(self, step: int = 0):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("deliberate failure from tests.helpers.RaiseAt")
