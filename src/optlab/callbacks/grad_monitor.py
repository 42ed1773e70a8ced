"""Gradient norm and gradient-to-weight ratio per layer, before clipping.

A layer whose ||grad|| / ||weight|| jumps by an order of magnitude is where a loss spike at a too
high learning rate starts; `grad_to_weight/max` is the one number to watch.

Computed only on steps whose metrics Lightning sends to the loggers (every
`trainer.log_every_n_steps`) and written straight to the loggers at Lightning's step for the batch,
so each row lands next to that batch's train/loss. (Through `self.log`, values from a
`every_n_steps` step would be written again at the next logging step.)
"""

import math

import torch
from lightning.pytorch import Callback

from optlab.loggers.steps import logged_step, logs_this_step


def _norm(t: torch.Tensor) -> float:
    n = torch.linalg.vector_norm(t.detach().float())
    return float(n.full_tensor() if hasattr(n, "full_tensor") else n)  # DTensor under FSDP2


class GradientMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None, per_layer: bool = True):
        """every_n_steps: None = every logging step; else a multiple of trainer.log_every_n_steps."""
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"callbacks.grad_monitor.every_n_steps={every_n_steps}: must be >= 1 (or null)")
        self.every_n_steps, self.per_layer = every_n_steps, per_layer

    @staticmethod
    def _interval_error(n: int | None, log_n: int, key: str) -> str | None:
        if n is None or (log_n and n % log_n == 0):
            return None
        return (f"{key}.every_n_steps={n} must be a multiple of trainer.log_every_n_steps={log_n} (other steps "
                f"are never written to the loggers); use {key}.every_n_steps=null for every logging step")

    @classmethod
    def check_config(cls, node, cfg, key: str) -> None:
        """Called by optlab.validate before anything starts."""
        from optlab.validate import ConfigError

        error = cls._interval_error(node.get("every_n_steps"), cfg.trainer.get("log_every_n_steps", 50), key)
        if error:
            raise ConfigError(error)

    def setup(self, trainer, pl_module, stage: str) -> None:
        error = self._interval_error(self.every_n_steps, trainer.log_every_n_steps, "grad_monitor")
        if error:
            raise ValueError(error)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = logged_step(trainer)
        if not logs_this_step(trainer) or (self.every_n_steps and (step + 1) % self.every_n_steps):
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
        if hasattr(pl_module, "examples_seen"):  # W&B's x-axis: this batch's value, not the last logged one
            stats["examples_seen"] = float(pl_module.examples_seen)
        for logger in trainer.loggers:  # rank-zero-only inside each logger
            logger.log_metrics(stats, step=step)
