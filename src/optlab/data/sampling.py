"""A shuffling sampler whose order depends only on (seed, epoch).

torch's RandomSampler draws its order from the global RNG, so a run resumed from a checkpoint
shuffles differently from one never stopped. This one is reproducible across resumes; it stays a
RandomSampler subclass so Lightning still swaps in a (seeded) DistributedSampler under DDP.
"""

import torch
from torch.utils.data import RandomSampler


class EpochSeededSampler(RandomSampler):
    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        return super().__iter__()
