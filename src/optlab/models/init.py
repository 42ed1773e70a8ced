"""`model.init`: how conv and linear weights start (their biases at zero; norm layers untouched).

- `default`: what the net does itself (optlab's ResNet: He normal with fan_out, zero-init residuals).
- `kaiming`: He et al. 2015, normal with Var(w) = 2 / fan_in, for ReLU nets.
- `xavier`: Glorot & Bengio 2010, normal with Var(w) = 2 / (fan_in + fan_out).
- `orthogonal`: Saxe et al. 2014, each weight (flattened to out x in) a scaled orthogonal matrix with
  gain sqrt(2) for ReLU, so its rows (or columns) have norm sqrt(2).
"""

import math

from torch import nn

SCHEMES = ("default", "kaiming", "xavier", "orthogonal")
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def initialize(net: nn.Module, scheme: str) -> None:
    """Re-initialize every conv and linear weight of `net` by `scheme` (see the module docstring)."""
    if scheme not in SCHEMES:
        raise ValueError(f"model.init={scheme!r} is not one of {', '.join(SCHEMES)}")
    if scheme == "default":
        return
    for layer in net.modules():
        if not isinstance(layer, LAYERS):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_normal_(layer.weight)
        else:
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
