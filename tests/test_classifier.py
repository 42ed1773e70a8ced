"""ImageClassifier's shortcut past nn.Module.__setattr__ for its per-step plain attributes."""

import torch
from torch import nn

from optlab.models import ImageClassifier, ResNet


def _model() -> ImageClassifier:
    net = ResNet(blocks=[1], widths=[4], in_channels=1, num_classes=3)
    return ImageClassifier(net, optimizer=torch.optim.SGD)


def test_plain_attributes_are_never_parameters_buffers_or_modules():
    model = _model()
    registered = {n.split(".")[0] for n, _ in model.named_parameters()} | set(model._buffers) | set(model._modules)
    assert not ImageClassifier._PLAIN_ATTRIBUTES & registered
    model._train_sums = torch.ones(2)
    model._current_fx_name = "training_step"
    assert "_train_sums" not in model.state_dict() and model._current_fx_name == "training_step"


def test_other_attributes_still_register_as_nn_module_does():
    model = _model()
    model.extra_head = nn.Linear(2, 2)
    model.scale = nn.Parameter(torch.ones(1))
    model.register_buffer("seen", torch.zeros(1))
    model.seen = torch.ones(1)  # assigning to a buffer name updates the buffer
    names = dict(model.named_parameters())
    assert "extra_head.weight" in names and "scale" in names
    assert torch.equal(model.state_dict()["seen"], torch.ones(1))
