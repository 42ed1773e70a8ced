"""Networks (one class per `model.net` option) and the LightningModule that trains them."""

from optlab.models.classifier import ImageClassifier
from optlab.models.pretrained import PretrainedResNet
from optlab.models.resnet import ResNet

__all__ = ["ImageClassifier", "PretrainedResNet", "ResNet"]
