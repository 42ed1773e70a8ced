"""Gradient norm and gradient-to-weight ratio per layer, before clipping.

A layer whose ||grad|| / ||weight|| jumps by an order of magnitude is where a loss spike at a too
high learning rate starts; `grad_to_weight/max` is the one number to watch.
"""

import math

import torch
from lightning.pytorch import Callback


def _norm(t: torch.Tensor) -> float:
    n = torch.linalg.vector_norm(t.detach().float())
    return float(n.full_tensor() if hasattr(n, "full_tensor") else n)  # DTensor under FSDP2


class GradientMonitor(Callback):
    def __init__(self, every_n_steps: int = 25, per_layer: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.grad_monitor.every_n_steps={every_n_steps}: must be >= 1")
        self.every_n_steps, self.per_layer = every_n_steps, per_layer

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        stats, total_sq, ratios = {}, 0.0, []
        for name, p in pl_module.named_parameters():
            if p.grad is None:
                continue
            g = _norm(p.grad)
            total_sq += g * g
            if p.ndim > 1:  # weights of conv/linear layers; biases and norms are in the total only
                ratio = g / (_norm(p) + 1e-12)
                ratios.append(ratio)
                if self.per_layer:
                    stats[f"grad_norm/{name}"] = g
                    stats[f"grad_to_weight/{name}"] = ratio
        if not ratios and not total_sq:
            return
        stats["grad_norm/total"] = math.sqrt(total_sq)
        if ratios:
            stats["grad_to_weight/max"] = max(ratios)
        pl_module.log_dict(stats, on_step=True, on_epoch=False)
