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
    """Each rank writes its final weights to <dir>/rank<k>.pt (and, with start=True, its initial
    ones to <dir>/start-rank<k>.pt)."""

    def __init__(self, dir: str, start: bool = False):
        self.dir, self.start = Path(dir), start

    def _dump(self, trainer, pl_module, prefix: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.save(full_state(pl_module), self.dir / f"{prefix}rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer, pl_module) -> None:
        if self.start:
            self._dump(trainer, pl_module, "start-")

    def on_train_end(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, "")


class CountTested(Callback):
    """Each rank writes how many test examples it evaluated to <dir>/tested-rank<k>.txt."""

    def __init__(self, dir: str):
        self.dir, self.count = Path(dir), 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.count += len(batch[1])

    def on_test_end(self, trainer, pl_module) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"tested-rank{trainer.global_rank}.txt").write_text(str(self.count))


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
