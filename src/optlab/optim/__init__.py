"""Optimizers and the param-group factory that every optimizer is built through."""

from optlab.optim.param_groups import build_optimizer, param_groups

__all__ = ["build_optimizer", "param_groups"]
