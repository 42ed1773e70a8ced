"""What every optlab DataModule shares: split datasets in, dataloaders out."""

import os

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from optlab.data.sampling import EpochSeededDistributedSampler, EpochSeededSampler, eval_sampler


class SplitDataModule(L.LightningDataModule):
    """Subclasses fill self.train_set / val_set / test_set in setup()."""

    def __init__(
        self,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        channels: int | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.channels = channels
        self.num_classes = num_classes
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self._train_sampler(dataset) if train else self._eval_sampler(dataset),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    @staticmethod
    def _train_sampler(dataset: Dataset) -> Sampler:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Lightning leaves a DistributedSampler in place.
            return EpochSeededDistributedSampler(dataset, shuffle=True, seed=seed)
        return EpochSeededSampler(dataset, seed=seed)

    def _eval_sampler(self, dataset: Dataset) -> Sampler | None:
        return eval_sampler(dataset, self.trainer.strategy if self.trainer is not None else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
