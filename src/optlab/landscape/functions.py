"""The 2-D test functions: each one a small class, registered by its `name`.

A function maps points `xy` of shape `(..., 2)` to values of shape `(...)`, so the same object
evaluates one parameter (for `trajectory`) and a whole plotting grid. Each carries what a readable
picture needs: a start point, plot bounds, iterations, per-optimizer learning rates, and its known
minima. Adding a function is one subclass with a new `name`; it appears in `FUNCTIONS` and in the
CLI by itself.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

FUNCTIONS: dict[str, TestFunction] = {}


class TestFunction:
    """Base class. Subclasses set the class attributes and implement `__call__`.

    start, bounds, iters: default start point, plot window ((x0, x1), (y0, y1)) and number of steps.
    lrs: learning rate per optimizer family ("sgd", "momentum", "rmsprop", "adam", ...); the
         `torch_` variants share their family's rate. An optimizer missing here runs with its
         constructor's default lr.
    minima: known minima (exact or to ~1e-9); empty when there is no finite minimum.
    valley: optional line segment ((x0, y0), (x1, y1)) drawn instead when the minimum is at infinity.
    log_levels: contour lines spaced logarithmically (for functions spanning many decades).
    """

    __test__ = False  # not a pytest test class, despite the name
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    start: ClassVar[tuple[float, float]] = (0.0, 0.0)
    bounds: ClassVar[tuple[tuple[float, float], tuple[float, float]]] = ((-1.0, 1.0), (-1.0, 1.0))
    iters: ClassVar[int] = 100
    lrs: ClassVar[dict[str, float]] = {}
    minima: ClassVar[tuple[tuple[float, float], ...]] = ()
    valley: ClassVar[tuple[tuple[float, float], tuple[float, float]] | None] = None
    log_levels: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in FUNCTIONS:
                raise ValueError(f"a landscape function named {cls.name!r} is already registered")
            FUNCTIONS[cls.name] = cls()

    def __call__(self, xy: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Ravine(TestFunction):
    """Pathological curvature: f(x, y) = tanh(x)^2 + 0.01|x| + sigmoid(y).

    A narrow valley along x = 0 (steep walls, curvature 2 at the floor) whose floor falls gently
    towards y -> -inf, where f -> 0. There is no finite minimum; the valley floor is marked instead.
    Plain SGD with a rate large enough to move along the floor bounces between the walls; methods
    that scale each coordinate (RMSprop, Adam) damp the steep direction and speed up the flat one.
    """

    name = "ravine"
    title = "Pathological curvature (ravine)"
    start = (1.5, 4.0)
    bounds = ((-2.5, 2.5), (-6.0, 5.0))
    iters = 100
    lrs = {
        **{"sgd": 2.0, "momentum": 0.1, "nesterov": 0.1, "rmsprop": 0.1, "adam": 0.1, "adamw": 0.1, "lion": 0.03},
        # Rprop's step sizes grow along the flat floor whatever its initial one: it leaves the plot
        **{"rprop": 0.01, "nadamw": 0.1, "adopt": 0.03, "adamw_schedulefree": 0.1, "sgd_schedulefree": 1.0},
    }
    valley = ((0.0, -6.0), (0.0, 5.0))

    def __call__(self, xy: Tensor) -> Tensor:
        x, y = xy[..., 0], xy[..., 1]
        return torch.tanh(x) ** 2 + 0.01 * x.abs() + torch.sigmoid(y)


class TriModal(TestFunction):
    """The negative of three Gaussian densities: f(p) = -sum_i N(p; mu_i, sigma^2 I), sigma = 0.2.

    Each term is the normalized 2-D density 1/(2 pi sigma^2) exp(-|p - mu|^2 / (2 sigma^2)), so each
    well is about -3.98 deep, with means (1, -0.5), (-1, 0.5), (-0.5, -0.8). The other components
    are at least 6.9 sigma away, so the local minima sit at the means to within 1e-9. Between the
    wells the surface is almost flat: which minimum an optimizer reaches, and whether it leaves the
    plateau at all, depends on how it normalizes tiny gradients.
    """

    name = "trimodal"
    title = "Negative tri-modal Gaussian mixture"
    start = (-0.2, 0.0)
    bounds = ((-1.6, 1.6), (-1.4, 1.2))
    iters = 150
    lrs = {
        **{"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 0.01, "adam": 0.05, "adamw": 0.05, "lion": 0.01},
        **{"rprop": 0.01, "nadamw": 0.01, "adopt": 0.03, "adamw_schedulefree": 0.1, "sgd_schedulefree": 0.3},
    }
    sigma = 0.2
    means = ((1.0, -0.5), (-1.0, 0.5), (-0.5, -0.8))
    minima = means

    def __call__(self, xy: Tensor) -> Tensor:
        mu = torch.tensor(self.means, dtype=xy.dtype, device=xy.device)  # (3, 2)
        sq = ((xy.unsqueeze(-2) - mu) ** 2).sum(-1)  # (..., 3)
        norm = 1.0 / (2 * math.pi * self.sigma**2)
        return -(norm * torch.exp(-sq / (2 * self.sigma**2))).sum(-1)


class Rosenbrock(TestFunction):
    """Rosenbrock's banana, shifted up by one: f(x, y) = (a - x)^2 + b (y - x^2)^2 + 1, a=1, b=100.

    The single minimum is f(1, 1) = 1 (the +1 keeps f positive, so log-spaced contours work). The
    curved valley y = x^2 is easy to fall into and slow to follow: the curvature across it is ~1000
    times the curvature along it, so SGD must take tiny steps and crawls, while adaptive methods
    move along the floor but tend to zig-zag.
    """

    name = "rosenbrock"
    title = "Rosenbrock's banana (a=1, b=100, +1)"
    start = (-1.2, 1.0)  # the textbook start
    bounds = ((-1.5, 1.5), (-0.5, 2.0))
    iters = 1000
    lrs = {
        **{"sgd": 1e-3, "momentum": 3e-4, "nesterov": 3e-4, "rmsprop": 1e-2, "adam": 1e-1, "adamw": 1e-1, "lion": 1e-2},
        **{"rprop": 1e-2, "nadamw": 3e-2, "adopt": 1.0, "adamw_schedulefree": 0.3, "sgd_schedulefree": 3e-3},
    }
    minima = ((1.0, 1.0),)
    log_levels = True
    a = 1.0
    b = 100.0

    def __call__(self, xy: Tensor) -> Tensor:
        x, y = xy[..., 0], xy[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2 + 1.0


def get_function(name: str) -> TestFunction:
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"unknown landscape function {name!r}; choose one of: {', '.join(FUNCTIONS)}") from None
