"""Our optimizers (one file each, drop-in torch.optim.Optimizer subclasses) and the param-group
factory that every optimizer is built through. docs/optimizers.md explains each update rule."""

from optlab.optim.adam import Adam
from optlab.optim.adamw import AdamW
from optlab.optim.adopt import ADOPT
from optlab.optim.lion import Lion
from optlab.optim.muon import Muon
from optlab.optim.nadam import NAdam, NAdamW
from optlab.optim.param_groups import build_optimizer, param_groups
from optlab.optim.rmsprop import RMSprop
from optlab.optim.rprop import Rprop
from optlab.optim.schedulefree import AdamWScheduleFree, SGDScheduleFree
from optlab.optim.sgd import SGD

__all__ = [
    "SGD",
    "RMSprop",
    "Rprop",
    "Adam",
    "AdamW",
    "NAdam",
    "NAdamW",
    "ADOPT",
    "SGDScheduleFree",
    "AdamWScheduleFree",
    "Lion",
    "Muon",
    "build_optimizer",
    "param_groups",
]
