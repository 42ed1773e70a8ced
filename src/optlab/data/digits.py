"""scikit-learn's bundled 8x8 digits: 1797 grayscale images, 10 classes, no download."""

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset

from optlab.data.base import SplitDataModule


class ShiftAugmented(Dataset):
    """Random shifts of up to `max_shift` pixels, rolled (what leaves one edge comes back at the other)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, max_shift: int = 1):
        self.images, self.labels, self.max_shift = images, labels, max_shift

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        dx, dy = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
        image = torch.roll(self.images[i], shifts=(dy, dx), dims=(1, 2))
        return image, self.labels[i]


class DigitsDataModule(SplitDataModule):
    """`data=digits`: the 1797 images split into test, validation and train by `split_seed` and
    standardized with the training images' mean and std (in setup, or per batch on the device with
    `normalize_on_device`); `augment` adds `ShiftAugmented`'s shifts."""

    NORMALIZES_ON_DEVICE = True

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        augment: bool = True,
        **loader_kwargs,
    ):
        super().__init__(batch_size, **loader_kwargs)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.augment = split_seed, augment

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        # The split is fixed by split_seed, not by the training seed: seeds vary, the test set must not.
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        n_test = int(len(labels) * self.test_fraction)
        n_val = int(len(labels) * self.val_fraction)
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        mean, std = images[train].mean(), images[train].std()
        if self.normalize_on_device:
            self.device_normalization = (mean, std)
        else:
            images = (images - mean) / std
        self.train_set = (
            ShiftAugmented(images[train], labels[train])
            if self.augment
            else TensorDataset(images[train], labels[train])
        )
        self.val_set = TensorDataset(images[val], labels[val])
        self.test_set = TensorDataset(images[test], labels[test])
