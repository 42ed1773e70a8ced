"""A fork's own dataset, network, optimizer and strategy, outside the template's files
(used by tests/test_extending.py exactly as docs/extending.md describes)."""

import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import TensorDataset

from optlab.data.base import SplitDataModule


class BlobsDataModule(SplitDataModule):
    """Two Gaussian blobs as 1x4x4 images: separable, so a working pipeline gets ~100%."""

    def setup(self, stage=None):
        if self.train_set is None:
            g = torch.Generator().manual_seed(0)
            y = torch.randint(0, 2, (512,), generator=g)
            x = torch.randn(512, 1, 4, 4, generator=g) + (y.float() * 4 - 2).view(-1, 1, 1, 1)
            self.train_set, self.val_set, self.test_set = (
                TensorDataset(x[s], y[s]) for s in (slice(0, 384), slice(384, 448), slice(448, 512))
            )


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)  # ImageClassifier reads the class count here

    def forward(self, x):
        return self.head(self.body(x))


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * group["weight_decay"]).add_(p.grad.sign(), alpha=-group["lr"])
        return loss


class CountingStrategy(SingleDeviceStrategy):
    """One device, counting optimizer steps: proof that the Trainer used this strategy."""

    steps = 0

    def optimizer_step(self, *args, **kwargs):
        CountingStrategy.steps += 1
        return super().optimizer_step(*args, **kwargs)
