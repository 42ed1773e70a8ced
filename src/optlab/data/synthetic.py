"""Random images of any shape, with random labels (benchmarks, where only the tensor shapes
matter) or labels from a fixed random convolutional teacher (`labels=teacher`: a learnable task of any
size, for comparisons and scaling studies)."""

import torch
from torch.utils.data import TensorDataset

from optlab.data.base import SplitDataModule


class SyntheticDataModule(SplitDataModule):
    """`data=synthetic`: the module docstring's data, made in memory from `seed`; validation and test
    (num_samples // 8 each) are drawn from other seeds than the training set, labelled by the same teacher."""

    def __init__(
        self,
        num_samples: int = 1024,
        shape=(3, 32, 32),
        batch_size: int = 64,
        seed: int = 0,
        labels: str = "random",
        **loader_kwargs,
    ):
        super().__init__(batch_size, **loader_kwargs)
        if labels not in ("random", "teacher"):
            raise ValueError(f"data.labels={labels!r} is invalid: choose random or teacher")
        self.num_samples, self.shape, self.seed, self.labels = num_samples, tuple(shape), seed, labels

    def _random_split(self, n: int, offset: int) -> TensorDataset:
        g = torch.Generator().manual_seed(self.seed + offset)
        x = torch.randn((n, *self.shape), generator=g)
        y = torch.randint(0, self.num_classes or 10, (n,), generator=g)
        if self.labels == "teacher":
            y = self._teacher(x)
        return TensorDataset(x, y)

    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        """Labels of a fixed random convolutional teacher (3x3 conv, ReLU, global mean, linear):
        the kind of function the ResNets here can learn. One teacher for every split (the seed's);
        its features are centred on a reference sample so that every class occurs."""
        import torch.nn.functional as F

        g = torch.Generator().manual_seed(self.seed + 1000)
        kernels = torch.randn((32, self.shape[0], 3, 3), generator=g)
        head = torch.randn((self.num_classes or 10, 32), generator=g)
        reference = torch.randn((1024, *self.shape), generator=g)

        def features(images):
            return F.conv2d(images, kernels, padding=1).relu().mean(dim=(2, 3))

        return ((features(x) - features(reference).mean(0)) @ head.T).argmax(dim=1)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            n_eval = max(1, self.num_samples // 8)
            self.train_set = self._random_split(self.num_samples, 0)
            self.val_set = self._random_split(n_eval, 1)
            self.test_set = self._random_split(n_eval, 2)
