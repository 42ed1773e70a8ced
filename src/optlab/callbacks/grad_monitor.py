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


def _norms(tensors: list[torch.Tensor]) -> list[float]:
    """L2 norm (in float32) of each tensor: one foreach kernel and one host sync for all of them."""
    if not tensors:
        return []
    if any(hasattr(t, "full_tensor") for t in tensors):  # DTensor under FSDP2: a norm is a reduction over ranks
        return [float(torch.linalg.vector_norm(t.detach().float()).full_tensor()) for t in tensors]
    return torch.stack(torch._foreach_norm([t.detach() for t in tensors], dtype=torch.float32)).tolist()


class GradientMonitor(Callback):
    """The per-layer gradient numbers of the module docstring, logged as a callback (`callbacks.grad_monitor`).

    Keeps the latest logged step's numbers in `last_stats`, which `callbacks.curves` records with its curve.
    """

    def __init__(self, every_n_steps: int | None = None, per_layer: bool = True):
        """every_n_steps: None = every logging step; else a multiple of trainer.log_every_n_steps."""
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"callbacks.grad_monitor.every_n_steps={every_n_steps}: must be >= 1 (or null)")
        self.every_n_steps, self.per_layer = every_n_steps, per_layer
        self.last_stats: dict[str, float] | None = None  # the latest step's, for callbacks.curves

    @staticmethod
    def _interval_error(n: int | None, log_n: int, key: str) -> str | None:
        if n is None or (log_n and n % log_n == 0):
            return None
        return (
            f"{key}.every_n_steps={n} must be a multiple of trainer.log_every_n_steps={log_n} (other steps "
            f"are never written to the loggers); use {key}.every_n_steps=null for every logging step"
        )

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
        """Lightning calls this after AMP unscales the gradients and before it clips them, so the norms are
        unscaled and unclipped. Only on steps the loggers write (with `every_n_steps`, every that many steps)."""
        step = logged_step(trainer)
        if not trainer.loggers or not logs_this_step(trainer):
            return
        if self.every_n_steps and (step + 1) % self.every_n_steps:
            return
        named = [(name, p) for name, p in pl_module.named_parameters() if p.grad is not None]
        # weights of conv/linear layers get a ratio; biases and norms are in the total only
        matrices = [i for i, (_, p) in enumerate(named) if p.ndim > 1]
        norms = _norms([p.grad for _, p in named] + [named[i][1] for i in matrices])
        grad_norms, weight_norms = norms[: len(named)], norms[len(named) :]
        total_sq = sum(g * g for g in grad_norms)
        stats, ratios = {}, []
        for i, w in zip(matrices, weight_norms):
            name, g = named[i][0], grad_norms[i]
            ratio = g / (w + 1e-12)
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
        self.last_stats = stats
        for logger in trainer.loggers:  # rank-zero-only inside each logger
            logger.log_metrics(stats, step=step)
