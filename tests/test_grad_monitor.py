"""GradientMonitor's numbers against per-tensor torch.linalg.vector_norm."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from optlab.callbacks import grad_monitor
from optlab.callbacks.grad_monitor import GradientMonitor


class Recorder:
    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step):
        self.rows.append((step, metrics))


def _run(monkeypatch, module: nn.Module, per_layer: bool = True) -> dict:
    monkeypatch.setattr(grad_monitor, "logs_this_step", lambda trainer: True)
    monkeypatch.setattr(grad_monitor, "logged_step", lambda trainer: 7)
    logger = Recorder()
    GradientMonitor(per_layer=per_layer).on_before_optimizer_step(SimpleNamespace(loggers=[logger]), module, None)
    assert [step for step, _ in logger.rows] == [7]
    return logger.rows[0][1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms_and_ratios_match_per_tensor_norms(monkeypatch, dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).to(dtype)
    net(torch.randn(2, 3, 8, 8, dtype=dtype)).square().sum().backward()
    net[3].bias.grad = None  # a parameter without a gradient is skipped
    stats = _run(monkeypatch, net)

    def norm(t):
        return torch.linalg.vector_norm(t.detach().float()).item()

    with_grad = {n: p for n, p in net.named_parameters() if p.grad is not None}
    total = math.sqrt(sum(norm(p.grad) ** 2 for p in with_grad.values()))
    assert stats["grad_norm/total"] == pytest.approx(total, rel=1e-5)
    matrices = {n: p for n, p in with_grad.items() if p.ndim > 1}
    assert sorted(k for k in stats if k.startswith("grad_to_weight/") and k != "grad_to_weight/max") == sorted(
        f"grad_to_weight/{n}" for n in matrices
    )
    for n, p in matrices.items():
        assert stats[f"grad_norm/{n}"] == pytest.approx(norm(p.grad), rel=1e-5)
        assert stats[f"grad_to_weight/{n}"] == pytest.approx(norm(p.grad) / norm(p), rel=1e-5)
    assert stats["grad_to_weight/max"] == max(stats[f"grad_to_weight/{n}"] for n in matrices)


def test_per_layer_off_logs_only_the_totals(monkeypatch):
    net = nn.Linear(3, 2)
    net(torch.randn(4, 3)).sum().backward()
    assert set(_run(monkeypatch, net, per_layer=False)) == {"grad_norm/total", "grad_to_weight/max"}


def test_no_gradients_logs_nothing(monkeypatch):
    monkeypatch.setattr(grad_monitor, "logs_this_step", lambda trainer: True)
    monkeypatch.setattr(grad_monitor, "logged_step", lambda trainer: 0)
    logger = Recorder()
    GradientMonitor().on_before_optimizer_step(SimpleNamespace(loggers=[logger]), nn.Linear(3, 2), None)
    assert logger.rows == []


def test_without_loggers_nothing_is_computed(monkeypatch):
    class Untouchable(nn.Module):
        def named_parameters(self, *args, **kwargs):
            raise AssertionError("norms computed with no logger to write them to")

    monkeypatch.setattr(grad_monitor, "logs_this_step", lambda trainer: True)
    monkeypatch.setattr(grad_monitor, "logged_step", lambda trainer: 0)
    GradientMonitor().on_before_optimizer_step(SimpleNamespace(loggers=[]), Untouchable(), None)
