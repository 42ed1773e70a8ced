"""Loss-landscape lab: classic 2-D test functions and optimizer paths on them.

To run:  python -m optlab.landscape   (PNG + HTML per function under logs/landscape/<run id>/)

`trajectory(fn, xy, optimizer_cls, n_iters, **hparams)` returns the `(n_iters + 1, 2)` path of
any `torch.optim.Optimizer` on one of the functions, first row the start point. The functions
live in `FUNCTIONS` (name -> object); adding one is one `TestFunction` subclass. Plots are in
`optlab.landscape.plots` (imported on demand: matplotlib and plotly load slowly).
"""

from optlab.landscape.functions import FUNCTIONS, Ravine, Rosenbrock, TestFunction, TriModal, get_function
from optlab.landscape.trajectory import DEFAULT_OPTIMIZERS, OPTIMIZERS, resolve_optimizer, trajectory

__all__ = [
    "FUNCTIONS",
    "TestFunction",
    "Ravine",
    "TriModal",
    "Rosenbrock",
    "get_function",
    "trajectory",
    "OPTIMIZERS",
    "DEFAULT_OPTIMIZERS",
    "resolve_optimizer",
]
