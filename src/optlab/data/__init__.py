"""LightningDataModules: one class per option of the `data` config group."""

from optlab.data.cifar10 import CIFAR10DataModule
from optlab.data.digits import DigitsDataModule
from optlab.data.synthetic import SyntheticDataModule

__all__ = ["CIFAR10DataModule", "DigitsDataModule", "SyntheticDataModule"]
