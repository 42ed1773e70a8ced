"""`model.init`: the weight variances He, Glorot and Saxe give, biases zero, norms untouched."""

import math

import pytest
import torch
from torch import nn

from optlab.models.init import initialize


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(64, 128, 3, bias=True), nn.BatchNorm2d(128), nn.Flatten(), nn.Linear(1024, 512))


@pytest.mark.parametrize(
    "scheme, variance",
    [("kaiming", lambda fan_in, fan_out: 2 / fan_in), ("xavier", lambda fan_in, fan_out: 2 / (fan_in + fan_out))],
)
def test_weight_variances_are_the_papers(scheme, variance):
    model = net()
    initialize(model, scheme)
    conv, bn, linear = model[0], model[1], model[3]
    for layer, fan_in, fan_out in ((conv, 64 * 9, 128 * 9), (linear, 1024, 512)):
        expected = variance(fan_in, fan_out)
        assert layer.weight.var().item() == pytest.approx(expected, rel=0.03), (scheme, layer)
        assert abs(layer.weight.mean().item()) < 0.05 * math.sqrt(expected)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(bn.weight, torch.ones(128)) and torch.equal(bn.bias, torch.zeros(128))


def test_orthogonal_rows_are_orthogonal_with_relu_gain():
    model = net()
    initialize(model, "orthogonal")
    for layer in (model[0], model[3]):
        w = layer.weight.detach().flatten(1)  # out x in, rows <= columns here
        assert torch.allclose(w @ w.T, 2 * torch.eye(w.shape[0]), atol=1e-4)


def test_default_leaves_the_net_alone_and_a_bad_scheme_or_pretrained_net_is_refused():
    model, reference = net(), net()
    initialize(model, "default")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    with pytest.raises(ValueError, match="model.init='he' is not one of default, kaiming, xavier, orthogonal"):
        initialize(model, "he")
    from optlab.models import ImageClassifier

    pretrained = net()
    pretrained.pretrained, pretrained.head = True, nn.Linear(4, 2)
    with pytest.raises(ValueError, match="model.init=xavier would overwrite the pretrained weights"):
        ImageClassifier(pretrained, optimizer=torch.optim.SGD, init="xavier")


def test_init_trains_from_the_command_line(make_cfg):
    from optlab.run import train

    metrics = train(make_cfg("debug=fast_dev_run", "logger=none", "model.init=orthogonal"))
    assert math.isfinite(metrics["train/loss"])
