"""A shuffling sampler whose epoch depends only on (seed, epoch): resumes repeat it exactly.

torch's RandomSampler draws its order from the global RNG, so a run resumed from a checkpoint
shuffles differently from one never stopped. This one seeds its own generator from
(seed, epoch) and, when the epoch's iteration starts, reseeds the global RNGs the same way, so
augmentation and dropout draws of that epoch repeat too. That has to happen here: Lightning
fetches the first batch before on_train_epoch_start, and skips that hook for an epoch restarted
from an end-of-epoch checkpoint. It stays a RandomSampler so Lightning still swaps in a seeded
DistributedSampler under DDP.
"""

import random

import numpy as np
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
        epoch_seed = (self.seed + 1_000_003 * self.epoch) % 2**32
        self.generator = torch.Generator().manual_seed(epoch_seed)
        torch.manual_seed(epoch_seed + 1)
        random.seed(epoch_seed + 1)
        np.random.seed((epoch_seed + 1) % 2**32)
        return super().__iter__()
