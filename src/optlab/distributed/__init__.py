"""Our collectives (built from send/recv only) and the data-parallel strategies the template adds
to Lightning's (the `strategy` config group). docs/distributed.md explains both."""

from optlab.distributed.collectives import all_reduce, broadcast, reduce
from optlab.distributed.fsdp import FSDP2Strategy
from optlab.distributed.strategy import AllReduceStrategy  # also registers Trainer(strategy="allreduce")

__all__ = ["all_reduce", "broadcast", "reduce", "FSDP2Strategy", "AllReduceStrategy"]
