"""Random images of any shape, with random labels (benchmarks, where only the tensor shapes
matter) or labels from a fixed random linear teacher (`labels=teacher`: a learnable task of any
size, for comparisons and scaling studies)."""

import torch
from torch.utils.data import TensorDataset

from optlab.data.base import SplitDataModule


class SyntheticDataModule(SplitDataModule):
    def __init__(self, num_samples: int = 1024, shape=(3, 32, 32), batch_size: int = 64,
                 seed: int = 0, labels: str = "random", **loader_kwargs):
        super().__init__(batch_size, **loader_kwargs)
        if labels not in ("random", "teacher"):
            raise ValueError(f"data.labels={labels!r} is invalid: choose random or teacher")
        self.num_samples, self.shape, self.seed, self.labels = num_samples, tuple(shape), seed, labels

    def _random_split(self, n: int, offset: int) -> TensorDataset:
        g = torch.Generator().manual_seed(self.seed + offset)
        x = torch.randn((n, *self.shape), generator=g)
        y = torch.randint(0, self.num_classes or 10, (n,), generator=g)
        if self.labels == "teacher":  # one teacher for every split: the seed's, not the split's
            w = torch.randn((self.num_classes or 10, x[0].numel()), generator=torch.Generator().manual_seed(self.seed))
            y = (x.flatten(1) @ w.T).argmax(dim=1)
        return TensorDataset(x, y)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            n_eval = max(1, self.num_samples // 8)
            self.train_set = self._random_split(self.num_samples, 0)
            self.val_set = self._random_split(n_eval, 1)
            self.test_set = self._random_split(n_eval, 2)
