"""What every optlab DataModule shares: split datasets in, dataloaders out."""

import os

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from optlab.data.sampling import EpochSeededDistributedSampler, EpochSeededSampler, eval_sampler


class SplitDataModule(L.LightningDataModule):
    """Subclasses fill self.train_set / val_set / test_set in setup().

    `normalize_on_device=true`: the loaders yield images as stored (uint8 for CIFAR-10: a quarter of
    the bytes to copy) and the standardization runs on the training device after the transfer, once
    per batch, instead of per image in the loader workers. Subclasses that support it set
    NORMALIZES_ON_DEVICE and `self.device_normalization = (mean, std)` in setup(); the result is the
    same tensor, bit for bit (tests/test_device_normalization.py)."""

    NORMALIZES_ON_DEVICE = False

    def __init__(
        self,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        channels: int | None = None,
        num_classes: int | None = None,
        normalize_on_device: bool = False,
    ):
        super().__init__()
        if normalize_on_device and not self.NORMALIZES_ON_DEVICE:
            raise ValueError(
                f"data.normalize_on_device=true: {type(self).__name__} does not standardize its images; remove it"
            )
        self.normalize_on_device = normalize_on_device
        self.device_normalization: tuple[torch.Tensor, torch.Tensor] | None = None
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

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not self.normalize_on_device:
            return batch
        x, y = batch
        mean, std = (t.to(x.device) for t in self.device_normalization)
        return standardize(x, mean, std), y

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std in float32; uint8 images are first scaled to [0, 1] as torchvision's ToTensor does."""
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div(255)
    return x.sub(mean).div(std)
