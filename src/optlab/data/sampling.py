"""A shuffling sampler whose epoch depends only on (seed, epoch): resumes repeat it exactly.

torch's RandomSampler draws its order from the global RNG, so a run resumed from a checkpoint
shuffles differently from one never stopped. This one seeds its own generator from
(seed, epoch) and, when the epoch's iteration starts, reseeds the global RNGs the same way, so
augmentation and dropout draws of that epoch repeat too. That has to happen here: Lightning
fetches the first batch before on_train_epoch_start, and skips that hook for an epoch restarted
from an end-of-epoch checkpoint.

Under a process group the DataModule uses `EpochSeededDistributedSampler` instead: DDP's shard of a
(seed, epoch) shuffle that reseeds the global RNGs per (seed, epoch, rank), so each rank augments
differently and a resumed run repeats its draws. Being a DistributedSampler, Lightning keeps it.

Evaluation under a process group uses `UnpaddedShardSampler` where the strategy allows it
(`eval_sampler`): every example once, so val/test metrics are exact.
"""

import random

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed + 1_000_003 * epoch) % 2**32


def seed_global_rngs(seed: int) -> None:
    """torch, random and numpy: what augmentation and dropout draw from (num_workers=0)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class EpochSeededSampler(RandomSampler):
    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __iter__(self):
        epoch_seed = _epoch_seed(self.seed, self.epoch)
        self.generator = torch.Generator().manual_seed(epoch_seed)
        seed_global_rngs(epoch_seed + 1)
        return super().__iter__()


class EpochSeededDistributedSampler(DistributedSampler):
    """DistributedSampler (order from seed + epoch, this rank's shard) + per-rank global RNG seeds."""

    def __iter__(self):
        seed_global_rngs(_epoch_seed(self.seed, self.epoch) + 1 + 7919 * self.rank)
        return super().__iter__()


class UnpaddedShardSampler(DistributedSampler):
    """This rank's examples in order (rank, rank + world, ...), none repeated: shards may differ by one.

    Lightning's DistributedSampler pads every shard to one length with repeated examples, so a
    2-rank test of 539 examples counts one twice (and Lightning advises testing on one device).
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, self.total_size, self.num_replicas))


def eval_sampler(dataset, strategy) -> Sampler | None:
    """The val/test sampler: unpadded shards under strategies whose ranks may run one evaluation
    batch fewer than others, else None (Lightning's padded DistributedSampler, or none at all).

    DDP and `allreduce` sync buffers on the first evaluation batch only (every rank has one while
    the set has at least one example per rank), so uneven shards are safe. FSDP gathers parameters
    in every forward: a rank with a batch fewer would leave the others waiting, so it keeps the
    padded shards, and Lightning's advice about them stays true there.
    """
    from lightning.pytorch.strategies import DDPStrategy

    from optlab.distributed.strategy import AllReduceStrategy

    world = strategy.world_size if strategy is not None else 1
    if world > 1 and len(dataset) >= world and isinstance(strategy, DDPStrategy | AllReduceStrategy):
        return UnpaddedShardSampler(dataset, num_replicas=world, rank=strategy.global_rank)
    return None
