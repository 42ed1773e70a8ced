"""Data-parallel strategies the template adds to Lightning's (the `strategy` config group)."""

from optlab.distributed.fsdp import FSDP2Strategy

__all__ = ["FSDP2Strategy"]
