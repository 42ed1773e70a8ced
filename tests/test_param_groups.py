"""Layer-wise lr decay in the param-group factory (decay/no-decay and lr_scales: test_train.py)."""

import functools

import pytest
import torch
from torch import nn

from optlab.models import ResNet
from optlab.models.pretrained import PretrainedResNet
from optlab.optim import build_optimizer
from optlab.validate import ConfigError, validate


def lrs_by_name(optimizer) -> dict[str, float]:
    return {n: g["lr"] for g in optimizer.param_groups for n in g["param_names"]}


def sgd(lr=1.0, weight_decay=0.0):
    from functools import partial

    return partial(torch.optim.SGD, lr=lr, weight_decay=weight_decay)


def test_resnet_layers_decay_from_the_head_down():
    net = ResNet(blocks=[1, 1], widths=[8, 16], in_channels=1, num_classes=3)
    lrs = lrs_by_name(build_optimizer(net, sgd(), layer_decay=0.5))
    assert lrs["head.weight"] == lrs["head.bias"] == 1.0
    assert lrs["blocks.1.conv1.weight"] == lrs["blocks.1.shortcut.1.bias"] == 0.5
    assert lrs["blocks.0.bn2.weight"] == 0.25
    assert lrs["stem.0.weight"] == lrs["stem.1.bias"] == 0.125
    assert len(lrs) == len(list(net.parameters()))


def test_pretrained_stem_is_one_layer_and_scales_multiply():
    net = PretrainedResNet(arch="resnet18", weights=None, num_classes=3, freeze="none")
    lrs = lrs_by_name(build_optimizer(net, sgd(), layer_decay=0.5, lr_scales={"backbone": 0.1}))
    assert lrs["head.weight"] == 1.0  # not in the backbone: no lr scale
    assert lrs["backbone.layer4.1.conv2.weight"] == pytest.approx(0.1 * 0.5)
    assert lrs["backbone.layer1.0.bn1.bias"] == pytest.approx(0.1 * 0.5**4)
    assert lrs["backbone.conv1.weight"] == lrs["backbone.bn1.weight"] == pytest.approx(0.1 * 0.5**5)


def test_without_lr_layers_the_top_level_children_are_the_layers():
    class Wrapper(nn.Module):  # like a LightningModule: one net inside, plus parameter-free members
        def __init__(self):
            super().__init__()
            self.metric = nn.Identity()
            self.net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))

    lrs = lrs_by_name(build_optimizer(Wrapper(), sgd(), layer_decay=0.5))
    # The ReLU is a (parameter-free) layer too: depth counts modules in order.
    assert [lrs[f"net.{i}.weight"] for i in (0, 2, 3)] == [0.125, 0.5, 1.0]


def test_layer_decay_checks(make_cfg):
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"layer_decay=1.5 must be a number in \(0, 1\]"):
        build_optimizer(net, sgd(), layer_decay=1.5)
    with pytest.raises(ConfigError, match="model.param_groups.layer_decay=0"):
        validate(make_cfg("model.param_groups.layer_decay=0"))


def test_layer_decay_trains_from_the_command_line(make_cfg):
    from optlab.run import train

    metrics = train(make_cfg("debug=fast_dev_run", "logger=none", "model.param_groups.layer_decay=0.8"))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_groups_keep_the_optimizer_classes_own_defaults():
    """A partial without lr or weight_decay: the groups carry the class's defaults, not a fixed one."""
    from optlab.optim import AdamW, Lion

    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    lion = build_optimizer(net, functools.partial(Lion))
    assert {g["lr"] for g in lion.param_groups} == {1e-4}
    adamw = build_optimizer(net, functools.partial(AdamW, lr=0.5))
    assert {g["lr"] for g in adamw.param_groups} == {0.5}
    assert {g["weight_decay"] for g in adamw.param_groups} == {0.0, 1e-2}  # biases: none; weights: AdamW's
