"""CIFAR-10 through torchvision's own file list, md5 check and download, with a clear error when the
files are not there. The batches are pickles: they are read with an allow-list (numpy arrays,
strings, numbers) instead of torchvision's bare pickle.load, which would run code a crafted file
names (data.verify_md5=false skips the only other guard)."""

import codecs
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from optlab.data.base import SplitDataModule

NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# What the python-format batches may name when unpickled (written by Python 2's or today's numpy).
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # the function numpy pickles arrays with (numpy 2 moved its module)
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles of bytes
}


class CIFAR10Files(datasets.CIFAR10):
    """torchvision's CIFAR10 with allow-listed unpickling, optionally without its md5 check (for
    re-packed or test copies)."""

    def __init__(self, root: str, train: bool = True, transform=None, download: bool = False, verify_md5: bool = True):
        # torchvision's __init__, with its two pickle.load calls replaced by load_batch.
        datasets.VisionDataset.__init__(self, root, transform=transform)
        self.train, self.verify_md5 = train, verify_md5
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        entries = [self.load_batch(name) for name, _ in (self.train_list if train else self.test_list)]
        self.data = np.vstack([e["data"] for e in entries]).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        self.targets = [label for e in entries for label in e.get("labels", e.get("fine_labels", []))]
        if verify_md5 and not self._check_integrity_of(self.meta["filename"], self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted. You can use download=True to download it")
        self.classes = self.load_batch(self.meta["filename"])[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def load_batch(self, name: str) -> dict:
        from optlab.safe_load import restricted_pickle

        return restricted_pickle(
            Path(self.root) / self.base_folder / name, BATCH_GLOBALS, "data.root", encoding="latin1"
        )

    def _check_integrity_of(self, name: str, md5: str) -> bool:
        return check_integrity(str(Path(self.root) / self.base_folder / name), md5)

    def _check_integrity(self) -> bool:
        if self.verify_md5:
            return super()._check_integrity()
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    @classmethod
    def file_names(cls) -> list[str]:
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


class CIFAR10DataModule(SplitDataModule):
    """`data=cifar10`: the training files split into train and validation (`val_size` images, chosen by
    `split_seed`, not the run's seed, and never augmented), the test files as the test set.
    `image_size=224 normalization=imagenet` feeds pretrained models. With `normalize_on_device` the
    workers yield uint8 images and the standardization runs on the device."""

    NORMALIZES_ON_DEVICE = True

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        verify_md5: bool = True,
        batch_size: int = 128,
        val_size: int = 5000,
        split_seed: int = 0,
        image_size: int = 32,
        normalization: str = "cifar10",
        augment: bool = True,
        **loader_kwargs,
    ):
        super().__init__(batch_size, **loader_kwargs)
        if normalization not in NORMALIZATION:
            raise ValueError(f"data.normalization={normalization!r}: use one of {sorted(NORMALIZATION)}")
        self.root, self.download, self.verify_md5 = str(root), download, verify_md5
        self.val_size, self.split_seed = val_size, split_seed
        self.image_size, self.normalization, self.augment = image_size, normalization, augment
        mean, std = (torch.tensor(v).view(-1, 1, 1) for v in NORMALIZATION[normalization])
        self.device_normalization = (mean, std) if self.normalize_on_device else None

    @staticmethod
    def check_config(node) -> None:
        """Called before training: offline, the files must already be under data.root."""
        from optlab.validate import ConfigError

        root = Path(str(node.root)).expanduser()
        if node.get("download"):
            return
        folder = root / CIFAR10Files.base_folder
        if not folder.is_dir():
            raise ConfigError(
                f"data.root={node.root} has no {CIFAR10Files.base_folder}/; point data.root at the "
                "folder that holds it, or set data.download=true when online"
            )
        missing = [name for name in CIFAR10Files.file_names() if not (folder / name).is_file()]
        if missing:
            raise ConfigError(
                f"data.root={node.root}: {CIFAR10Files.base_folder}/ lacks {', '.join(missing)}; "
                "extract the whole archive there, or set data.download=true when online"
            )

    def _transforms(self, train: bool) -> transforms.Compose:
        steps = []
        if self.image_size != 32:
            steps.append(transforms.Resize(self.image_size, antialias=True))
        if train and self.augment:
            pad = max(4, self.image_size // 8)
            steps += [transforms.RandomCrop(self.image_size, padding=pad), transforms.RandomHorizontalFlip()]
        if self.normalize_on_device:
            steps.append(transforms.PILToTensor())  # uint8, standardized on the device (SplitDataModule)
        else:
            steps += [transforms.ToTensor(), transforms.Normalize(*NORMALIZATION[self.normalization])]
        return transforms.Compose(steps)

    def _dataset(self, train: bool, transform) -> CIFAR10Files:
        try:
            return CIFAR10Files(
                self.root, train=train, transform=transform, download=self.download, verify_md5=self.verify_md5
            )
        except (RuntimeError, OSError) as e:  # torchvision: "Dataset not found or corrupted"; URLError offline
            folder = Path(self.root) / CIFAR10Files.base_folder
            if self.verify_md5 and all((folder / name).is_file() for name in CIFAR10Files.file_names()):
                raise FileNotFoundError(
                    f"data.root={self.root}: the files in {CIFAR10Files.base_folder}/ fail torchvision's md5 "
                    "check; re-extract the original archive, or set data.verify_md5=false for a re-packed copy"
                ) from None
            raise FileNotFoundError(
                f"data.root={self.root} holds no usable CIFAR-10 ({e}); put cifar-10-batches-py/ there, "
                "point data.root at a folder that has it, or set data.download=true when online"
            ) from None

    def prepare_data(self) -> None:
        if self.download:  # once per node, before setup() runs on every rank
            self._dataset(train=True, transform=None)
            self._dataset(train=False, transform=None)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_full = self._dataset(train=True, transform=self._transforms(train=True))
        eval_full = self._dataset(train=True, transform=self._transforms(train=False))
        order = torch.randperm(len(train_full), generator=torch.Generator().manual_seed(self.split_seed))
        val_size = min(self.val_size, len(train_full) // 2)
        self.train_set = Subset(train_full, order[val_size:].tolist())
        self.val_set = Subset(eval_full, order[:val_size].tolist())
        self.test_set = self._dataset(train=False, transform=self._transforms(train=False))
