"""Our optimizers (optlab.optim) against torch.optim and against the published Lion rule.

Each case trains two copies of a tiny conv net (Conv2d, BatchNorm2d, Linear, one parameter that
never gets a gradient) for 200 steps on random data with a real loss, using hyperparameters
drawn at random from a seeded generator: several param groups with their own lr / weight decay /
momentum / amsgrad ..., maximize on or off. Parameters, BatchNorm buffers and optimizer state
must agree with torch's default (for-loop) and foreach implementations to 1e-6 relative in
float32 and 1e-12 in float64 (on CPU they are in fact bit for bit equal), and Lion with the
paper's rule written out per tensor. Also: checkpoints resume bit for bit, state_dicts load
across ours and torch's, bad arguments raise ValueError naming the argument, and the step runs
on DTensor params. About 30 s on 2 cores.
"""

import copy
import functools
import inspect
import io
import math
import random
import re

import pytest
import torch
from torch import nn

from optlab.optim.adam import Adam
from optlab.optim.adamw import AdamW
from optlab.optim.adopt import ADOPT
from optlab.optim.lion import Lion
from optlab.optim.muon import Muon
from optlab.optim.nadam import NAdam, NAdamW
from optlab.optim.rmsprop import RMSprop
from optlab.optim.rprop import Rprop
from optlab.optim.schedulefree import AdamWScheduleFree, SGDScheduleFree
from optlab.optim.sgd import SGD

STEPS = 200
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 2 * 2, 8)
        self.fc2 = nn.Linear(8, 3)
        self.unused = nn.Parameter(torch.ones(5))  # never gets a gradient: must get no update, no state

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.max_pool2d(x, 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def make_model(dtype, seed=0):
    torch.manual_seed(seed)
    return TinyNet().to(dtype)


def batches(n, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, 6, 6, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)
    ]


def train(model, opt, data, maximize=False):
    for x, y in data:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        # With maximize the optimizer ascends, so hand it -loss: training still converges
        # instead of blowing up, and the comparison stays meaningful over 200 steps.
        (-loss if maximize else loss).backward()
        opt.step()


def groups_of(model, group_hparams):
    """Split the parameters round-robin into len(group_hparams) groups, with extra keys like ours."""
    named = list(model.named_parameters())
    out = []
    for i, hp in enumerate(group_hparams):
        part = named[i :: len(group_hparams)]
        out.append({"params": [p for _, p in part], "param_names": [n for n, _ in part], **hp})
    return out


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def model_err(model_a, model_b):
    """Largest relative difference over parameters and buffers (BatchNorm running stats)."""
    return max(
        rel_err(a, b)
        for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values())
        if a.is_floating_point()
    )


def state_err(model_a, opt_a, model_b, opt_b):
    """Largest relative difference over the optimizer state tensors, which must have the same keys."""
    errs = [0.0]
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert set(sa) == set(sb), (set(sa), set(sb))
        errs += [rel_err(sa[k].double(), sb[k].double()) for k in sa if sa[k].is_floating_point()]
    return max(errs)


def max_rel_err(model_a, opt_a, model_b, opt_b):
    return max(model_err(model_a, model_b), state_err(model_a, opt_a, model_b, opt_b))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and, on a busy machine, avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Random hyperparameters: one draw per (algorithm, seed); 2-3 param groups whose keys override the
# constructor's, as our param-group factory produces (plus its extra "param_names" key).
def n_groups(r):
    return r.randint(2, 3)


def draw_sgd(r):
    nesterov = r.random() < 0.5
    common = dict(
        momentum=r.choice([0.5, 0.9]),
        dampening=0.0 if nesterov else r.choice([0.0, 0.3]),
        nesterov=nesterov,
        maximize=r.random() < 0.5,
    )
    groups = [dict(lr=10 ** r.uniform(-3, -1.5), weight_decay=r.choice([0.0, 1e-2])) for _ in range(n_groups(r))]
    if r.random() < 0.7:  # a group with its own momentum (plain SGD or heavy ball without nesterov)
        groups[0].update(momentum=r.choice([0.0, 0.8]), nesterov=False)
    return common, groups


def draw_adam(r):
    common = dict(
        betas=(r.choice([0.8, 0.9]), r.choice([0.99, 0.999])),
        eps=r.choice([1e-8, 1e-6]),
        amsgrad=r.random() < 0.5,
        maximize=r.random() < 0.5,
    )
    groups = [dict(lr=10 ** r.uniform(-4, -2), weight_decay=r.choice([0.0, 1e-2, 0.1])) for _ in range(n_groups(r))]
    groups[-1]["amsgrad"] = not common["amsgrad"]
    return common, groups


def draw_rmsprop(r):
    common = dict(
        alpha=r.choice([0.9, 0.99]),
        eps=r.choice([1e-8, 1e-6]),
        centered=r.random() < 0.5,
        momentum=r.choice([0.0, 0.5]),
        maximize=r.random() < 0.5,
    )
    groups = [dict(lr=10 ** r.uniform(-4, -2.5), weight_decay=r.choice([0.0, 1e-2])) for _ in range(n_groups(r))]
    groups[0].update(centered=not common["centered"], momentum=0.9 - common["momentum"])
    return common, groups


def draw_lion(r):
    common = dict(betas=(r.choice([0.9, 0.95]), r.choice([0.98, 0.99])), maximize=r.random() < 0.5)
    groups = [dict(lr=10 ** r.uniform(-4.5, -3), weight_decay=r.choice([0.0, 0.1, 1.0])) for _ in range(n_groups(r))]
    return common, groups


def draw_rprop(r):
    common = dict(etas=(r.choice([0.3, 0.5]), r.choice([1.1, 1.2])), maximize=r.random() < 0.5)
    groups = [
        dict(lr=10 ** r.uniform(-3, -1.5), step_sizes=r.choice([(1e-6, 50.0), (1e-4, 1e-2)]))
        for _ in range(n_groups(r))
    ]
    return common, groups


def draw_nadam(r):
    common = dict(
        betas=(r.choice([0.8, 0.9]), r.choice([0.99, 0.999])),
        eps=r.choice([1e-8, 1e-6]),
        decoupled_weight_decay=r.random() < 0.5,
        maximize=r.random() < 0.5,
    )
    groups = [
        dict(lr=10 ** r.uniform(-4, -2), weight_decay=r.choice([0.0, 1e-2, 0.1]), momentum_decay=r.choice([4e-3, 1e-2]))
        for _ in range(n_groups(r))
    ]
    groups[-1]["decoupled_weight_decay"] = not common["decoupled_weight_decay"]
    groups[0]["weight_decay"] = 0.0
    return common, groups


def draw_nadamw(r):
    common, groups = draw_nadam(r)
    for hp in (common, *groups):
        hp.pop("decoupled_weight_decay", None)
    return common, groups


DRAWS = {
    "SGD": draw_sgd,
    "Adam": draw_adam,
    "AdamW": draw_adam,
    "RMSprop": draw_rmsprop,
    "Lion": draw_lion,
    "Rprop": draw_rprop,
    "NAdam": draw_nadam,
    "NAdamW": draw_nadamw,
}
SEEDS = range(3)
SALT = "23"  # picked so that SEEDS cover every option (test_draws_cover_every_option)
SALT_OF = {"NAdamW": "-2"}  # the same, for algorithms added later (keeps the others' draws)


def draw(name, seed):
    """(constructor kwargs, param-group dicts) for one test case."""
    return DRAWS[name](random.Random(f"{SALT}-{name}-{seed}{SALT_OF.get(name, '')}"))


NOT_SWITCHES = ("lr", "betas", "eps", "alpha", "etas", "step_sizes", "momentum_decay")  # values, not on/off


@pytest.mark.parametrize("name", list(DRAWS))
def test_draws_cover_every_option(name):
    """Across SEEDS every option is seen both on and off, in some param group of some case."""
    seen = set()
    for seed in SEEDS:
        common, groups = draw(name, seed)
        for group in groups:
            seen |= {(k, bool(v)) for k, v in {**common, **group}.items() if k not in NOT_SWITCHES}
    missing = {(k, not v) for k, v in seen} - seen
    assert not missing, f"no case with {sorted(missing)}; change SALT"


TORCH_CASES = [
    (SGD, torch.optim.SGD),
    (Adam, torch.optim.Adam),
    (AdamW, torch.optim.AdamW),
    (RMSprop, torch.optim.RMSprop),
    (Rprop, torch.optim.Rprop),
    (NAdam, torch.optim.NAdam),
    (NAdamW, functools.partial(torch.optim.NAdam, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ours,theirs", TORCH_CASES, ids=[c[0].__name__ for c in TORCH_CASES])
def test_matches_torch(ours, theirs, seed, dtype):
    common, group_hps = draw(ours.__name__, seed)
    data = batches(STEPS, dtype, seed)
    model = make_model(dtype, seed)
    opt = ours(groups_of(model, group_hps), **common)
    train(model, opt, data, common["maximize"])
    initial = make_model(dtype, seed)
    for (name, a), b in zip(model.named_parameters(), initial.parameters()):
        # conv.bias feeds BatchNorm, which subtracts it again: its gradient is ~0, so it may stay.
        assert torch.equal(a, b) == (name == "unused") or name == "conv.bias", name
    assert model.unused.grad is None and model.unused not in opt.state and torch.equal(model.unused, initial.unused)
    assert all(
        s["step"].dtype == torch.float32 and s["step"].item() == STEPS for s in opt.state.values() if "step" in s
    )
    # torch's foreach NAdam differs from its own for-loop NAdam (sqrt(v)/sqrt(bc2) for sqrt(v/bc2);
    # with maximize and decoupled decay by 1.4 relative after 50 steps): ours follows the for-loop.
    for foreach in (False,) if ours in (NAdam, NAdamW) else (False, True):
        ref_model = make_model(dtype, seed)
        ref_opt = theirs(groups_of(ref_model, group_hps), foreach=foreach, **common)
        train(ref_model, ref_opt, data, common["maximize"])
        err = max_rel_err(model, opt, ref_model, ref_opt)
        assert err <= TOL[dtype], f"foreach={foreach}: relative error {err:.2e} ({common}, {group_hps})"


def caution(update, g):
    """Liang et al. 2024 (Cautious Optimizers): keep the coordinates where the update and the
    gradient agree in sign, scaled by 1 / (the fraction kept), that fraction at least 1e-3."""
    keep = (update * g > 0).to(update.dtype)
    return update * (keep / max(keep.mean().item(), 1e-3))


def lion_reference(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, cautious=False):
    """Chen et al. 2023, Algorithm 2, one tensor at a time."""
    for p, g, m in zip(params, grads, exp_avgs):
        g = -g if maximize else g
        c = beta1 * m + (1 - beta1) * g
        p.mul_(1 - lr * weight_decay)
        if cautious:  # add_ with alpha, as ours: sign flips make a chaotic run of one-ulp differences
            p.add_(caution(torch.sign(c), g), alpha=-lr)
        else:
            p.sub_(lr * torch.sign(c))
        m.copy_(beta2 * m + (1 - beta2) * g)


class LionReference(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, weight_decay, maximize, cautious=False):
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize, cautious=cautious)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                self.state[p].setdefault("exp_avg", torch.zeros_like(p))
            lion_reference(
                params,
                [p.grad for p in params],
                [self.state[p]["exp_avg"] for p in params],
                group["lr"],
                *group["betas"],
                group["weight_decay"],
                group["maximize"],
                group["cautious"],
            )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "options",
    [{}, {"weight_decay": 0.01, "weight_decouple": True}, {"weight_decay": 0.01}, {"maximize": True, "eps": 1e-8}],
    ids=["plain", "decoupled", "l2", "maximize"],
)
def test_adopt_matches_pytorch_optimizer(options, dtype):
    """ADOPT against pytorch_optimizer's (its per-parameter path), two groups, 100 steps."""
    reference = pytest.importorskip("pytorch_optimizer").ADOPT
    data = batches(100, dtype)
    model, ref_model = make_model(dtype), make_model(dtype)
    opt = ADOPT(groups_of(model, [{}, {"lr": 5e-4}]), lr=1e-3, **options)
    ref_opt = reference(groups_of(ref_model, [{}, {"lr": 5e-4}]), lr=1e-3, foreach=False, **options)
    train(model, opt, data, options.get("maximize", False))
    train(ref_model, ref_opt, data, options.get("maximize", False))
    assert model_err(model, ref_model) <= TOL[dtype]
    assert not torch.equal(model.fc1.weight, make_model(dtype).fc1.weight)


class CautiousAdamWReference(torch.optim.Optimizer):
    """AdamW as its paper writes it, with the update's first moment masked by `caution`."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in (p for p in group["params"] if p.grad is not None):
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t, g, m, v = state["step"], p.grad, state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * group["weight_decay"])
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
                denom = (v / (1 - b2**t)).sqrt() + group["eps"]
                p.sub_(lr / (1 - b1**t) * caution(m, g) / denom)


@pytest.mark.parametrize("seed", SEEDS)
def test_cautious_adamw_and_lion_follow_the_rule(seed):
    """cautious=True against the rule written out per tensor (float64), and it changes the run."""
    data = batches(60, torch.float64, seed)
    hp = dict(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    for ours, reference in (
        (functools.partial(AdamW, eps=1e-8), functools.partial(CautiousAdamWReference, eps=1e-8)),
        (Lion, functools.partial(LionReference, maximize=False)),
    ):
        model, ref_model, plain_model = (make_model(torch.float64, seed) for _ in range(3))
        train(model, ours(groups_of(model, [{}, {"lr": 1e-3}]), cautious=True, **hp), data)
        ref_kwargs = {"cautious": True} if reference.func is LionReference else {}
        train(ref_model, reference(groups_of(ref_model, [{}, {"lr": 1e-3}]), **hp, **ref_kwargs), data)
        train(plain_model, ours(groups_of(plain_model, [{}, {"lr": 1e-3}]), **hp), data)
        assert model_err(model, ref_model) <= 1e-9, ours
        assert model_err(model, plain_model) > 1e-3, "cautious=True must change the run"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("seed", SEEDS)
def test_lion_matches_paper(seed, dtype):
    common, group_hps = draw("Lion", seed)
    data = batches(STEPS, dtype, seed)
    model, ref_model = make_model(dtype, seed), make_model(dtype, seed)
    opt = Lion(groups_of(model, group_hps), **common)
    ref_opt = LionReference(groups_of(ref_model, group_hps), lr=1e-4, weight_decay=0.0, **common)
    train(model, opt, data, common["maximize"])
    train(ref_model, ref_opt, data, common["maximize"])
    err = model_err(model, ref_model)
    assert err <= TOL[dtype], f"relative error {err:.2e} ({common}, {group_hps})"
    # The momentum is updated with lerp (one pass) where the paper writes beta*m + (1-beta)*g:
    # both round differently, so m drifts by a few float32 ulps. Only sign(c) reaches the weights,
    # which is why they still match to TOL (bit for bit in practice).
    err = state_err(model, opt, ref_model, ref_opt)
    state_tol = 1e-5 if dtype == torch.float32 else TOL[dtype]
    assert err <= state_tol, f"momentum relative error {err:.2e}"


# Settings that create every kind of state tensor.
RICH = {
    SGD: dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
    Adam: dict(lr=1e-3, amsgrad=True, weight_decay=1e-3),
    AdamW: dict(lr=1e-3, amsgrad=True),
    RMSprop: dict(lr=1e-3, momentum=0.5, centered=True),
    Lion: dict(lr=1e-4, weight_decay=0.1),
    Rprop: dict(lr=0.01, etas=(0.4, 1.3)),
    NAdam: dict(lr=1e-3, weight_decay=1e-3),
    NAdamW: dict(lr=1e-3, weight_decay=1e-2),
    ADOPT: dict(lr=1e-3, weight_decay=1e-3, weight_decouple=True),
}


def save_load(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("cls", list(RICH), ids=lambda c: c.__name__)
def test_checkpoint_resume_is_exact(cls):
    """N steps, checkpoint, fresh model + optimizer, load, M steps == N + M steps uninterrupted."""
    data = batches(12, torch.float32)
    model = make_model(torch.float32)
    opt = cls(groups_of(model, [{}, {"lr": RICH[cls]["lr"] / 2}]), **RICH[cls])
    train(model, opt, data)

    model_a = make_model(torch.float32)
    opt_a = cls(groups_of(model_a, [{}, {"lr": RICH[cls]["lr"] / 2}]), **RICH[cls])
    train(model_a, opt_a, data[:5])
    ckpt = save_load({"model": model_a.state_dict(), "opt": opt_a.state_dict()})
    model_b = make_model(torch.float32, seed=123)  # different init: everything must come from the checkpoint
    opt_b = cls(groups_of(model_b, [{}, {}]), lr=123.0)
    model_b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    train(model_b, opt_b, data[5:])

    for a, b in zip(model.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    for pa, pb in zip(model.parameters(), model_b.parameters()):
        assert opt.state[pa].keys() == opt_b.state[pb].keys()
        assert all(torch.equal(opt.state[pa][k], opt_b.state[pb][k]) for k in opt.state[pa])
    assert [g["lr"] for g in opt_b.param_groups] == [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("ours,theirs", TORCH_CASES, ids=[c[0].__name__ for c in TORCH_CASES])
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dict_interchangeable_with_torch(ours, theirs, direction):
    """A checkpoint of one implementation continues in the other exactly as in the first."""
    first, second = (ours, theirs) if direction == "ours_to_torch" else (theirs, ours)
    # torch's load_state_dict casts NAdam's float32 `mu_product` to a float64 param's dtype (its own
    # resume is then not exact); float32 params keep the comparison exact.
    dtype = torch.float32 if ours in (NAdam, NAdamW) else torch.float64
    data = batches(10, dtype)
    model = make_model(dtype)
    opt = first(model.parameters(), **RICH[ours])
    train(model, opt, data[:5])
    resumed_model = copy.deepcopy(model)
    resumed = second(resumed_model.parameters(), **RICH[ours])
    resumed.load_state_dict(save_load(opt.state_dict()))
    train(model, opt, data[5:])
    train(resumed_model, resumed, data[5:])
    assert max_rel_err(resumed_model, resumed, model, opt) <= 1e-12
    if ours is AdamW:
        assert all(g["decoupled_weight_decay"] for g in resumed.param_groups)


BAD_ARGS = [
    (SGD, dict(lr=-0.1), "learning rate"),
    (SGD, dict(lr=0.1, momentum=-0.5), "momentum"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (SGD, dict(lr=0.1, nesterov=True), "Nesterov"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
    (Adam, dict(lr=-1e-3), "learning rate"),
    (Adam, dict(eps=-1e-8), "epsilon"),
    (Adam, dict(betas=(1.0, 0.999)), "beta parameter at index 0"),
    (Adam, dict(betas=(0.9, -0.1)), "beta parameter at index 1"),
    (Adam, dict(betas=(0.9,)), "betas"),
    (Adam, dict(weight_decay=-0.1), "weight_decay"),
    (AdamW, dict(betas=(0.9, 1.5)), "beta parameter at index 1"),
    (AdamW, dict(weight_decay=-0.1), "weight_decay"),
    (RMSprop, dict(lr=-1.0), "learning rate"),
    (RMSprop, dict(alpha=-0.9), "alpha"),
    (RMSprop, dict(eps=-1.0), "epsilon"),
    (RMSprop, dict(momentum=-0.9), "momentum"),
    (RMSprop, dict(weight_decay=-1.0), "weight_decay"),
    (Lion, dict(lr=-1e-4), "learning rate"),
    (Lion, dict(betas=(-0.1, 0.99)), "beta parameter at index 0"),
    (Lion, dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
    (Lion, dict(weight_decay=-1.0), "weight_decay"),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD_ARGS, ids=[f"{c.__name__}-{list(k)[-1]}" for c, k, _ in BAD_ARGS])
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([nn.Parameter(torch.zeros(2))], **kwargs)


@pytest.mark.parametrize("cls", list(RICH), ids=lambda c: c.__name__)
def test_torch_switches_run_at_their_defaults_and_the_rest_are_refused(cls):
    """Code written for torch.optim passes foreach/fused/differentiable/capturable: ours runs it
    unchanged where it does the same (foreach, whatever its value), and refuses the rest with a
    ValueError saying what to use instead."""
    data = batches(3, torch.float32)
    reference = make_model(torch.float32)
    train(reference, cls(reference.parameters(), **RICH[cls]), data)
    accepted = inspect.signature(cls).parameters  # the switches torch's class of that name has
    for switches in (
        dict(foreach=None, fused=None, differentiable=False, capturable=False),
        dict(foreach=False, fused=False),
        dict(foreach=True),
    ):
        model = make_model(torch.float32)
        train(model, cls(model.parameters(), **RICH[cls], **{k: v for k, v in switches.items() if k in accepted}), data)
        assert model_err(model, reference) == 0, switches
    refused = (("fused", "fused kernel"), ("differentiable", "no_grad"), ("capturable", "CUDA graphs"))
    for switch, says in ((k, m) for k, m in refused if k in accepted):
        with pytest.raises(ValueError, match=f"{cls.__name__}\\({switch}=True\\): ours .*{says}"):
            cls([nn.Parameter(torch.zeros(2))], **{switch: True})


@pytest.mark.parametrize("ours,theirs", TORCH_CASES, ids=[c[0].__name__ for c in TORCH_CASES])
def test_tensor_lr_and_betas_match_torch(ours, theirs):
    """A 1-element tensor lr (and betas) trains as torch's does; malformed ones fail at construction
    with torch's exception and message."""
    data = batches(20, torch.float32)
    kwargs = dict(RICH[ours], lr=torch.tensor(RICH[ours]["lr"]))
    if "betas" in inspect.signature(ours).parameters:
        kwargs["betas"] = (torch.tensor(0.9), torch.tensor(0.99))
    results = []
    for cls in (ours, theirs):
        model = make_model(torch.float32)
        opt = cls(groups_of(model, [{}, {"lr": torch.tensor(RICH[ours]["lr"] / 2)}]), **kwargs)
        train(model, opt, data)
        results.append((model, opt))
    assert max_rel_err(*results[0], *results[1]) <= TOL[torch.float32]
    bad = [(dict(lr=torch.tensor([1e-3, 2e-3])), "Tensor lr must be 1-element")]
    if "betas" in kwargs:
        bad += [
            (dict(betas=(0.9, torch.tensor(0.99))), "betas must be either both floats or both Tensors"),
        ]
        with pytest.raises(ValueError, match=r"Tensor betas\[0\] must be 1-element"):  # torch: RuntimeError (ambiguous)
            ours([nn.Parameter(torch.zeros(2))], betas=(torch.tensor([0.9, 0.8]), torch.tensor(0.99)))
    for args, message in bad:  # refused where torch refuses (its NAdam takes mixed betas)
        try:
            theirs([nn.Parameter(torch.zeros(2))], **args)
        except ValueError as e:
            assert re.search(message, str(e))
            with pytest.raises(ValueError, match=message):
                ours([nn.Parameter(torch.zeros(2))], **args)
        else:
            ours([nn.Parameter(torch.zeros(2))], **args)


@pytest.mark.parametrize("cls", [*RICH, Muon], ids=lambda c: c.__name__)
def test_a_step_that_raises_changes_nothing(cls):
    """Every group is checked before any is updated: a bad gradient or lr in the last group leaves
    the parameters and the state of the first ones as they were."""
    model = make_model(torch.float32)
    opt = cls(groups_of(model, [{}, {}]), **RICH.get(cls, {}))
    train(model, opt, batches(2, torch.float32))
    last = opt.param_groups[-1]["params"][0]
    for breaks in ("sparse", "lr"):
        opt.zero_grad()
        nn.functional.cross_entropy(model(batches(1, torch.float32)[0][0]), torch.zeros(8, dtype=torch.long)).backward()
        before = copy.deepcopy((model.state_dict(), opt.state_dict()))
        if breaks == "sparse":
            last.grad = last.grad.to_sparse()
        else:
            lr = opt.param_groups[-1]["lr"]
            opt.param_groups[-1]["lr"] = torch.tensor([lr, lr])
        with pytest.raises((RuntimeError, ValueError), match="sparse|Tensor lr must be 1-element"):
            opt.step()
        after = (model.state_dict(), opt.state_dict())
        if breaks == "lr":
            opt.param_groups[-1]["lr"] = lr
        for a, b in zip(before[0].values(), after[0].values()):
            assert torch.equal(a, b)
        for p, state in before[1]["state"].items():
            assert all(torch.equal(v, after[1]["state"][p][k]) for k, v in state.items()), p


@pytest.mark.parametrize("cls", list(RICH), ids=lambda c: c.__name__)
def test_params_forms_unsupported_grads_and_closure(cls):
    w = nn.Parameter(torch.ones(3))
    for params in ([w], [("w", w)], [{"params": [w], "param_names": ["w"]}]):
        cls(params)  # tensors, (name, tensor) pairs, groups with extra keys
    opt = cls([w], lr=0.1)
    w.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    w.grad = None
    z = nn.Parameter(torch.ones(2, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="complex"):
        cls([z]).step()

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 3.0
    if cls is ADOPT:  # its first step only sets the second moment
        opt.step(closure)
    assert not torch.equal(w.detach(), torch.ones(3))


# Every optimizer and option of ours: RICH, the cautious mask, schedule-free (in train mode).
DTENSOR_CASES = [
    *RICH.items(),
    (AdamW, dict(lr=1e-3, weight_decay=0.1, cautious=True)),
    (Lion, dict(lr=1e-4, weight_decay=0.1, cautious=True)),
    (SGDScheduleFree, dict(lr=0.05, momentum=0.8, weight_decay=0.01, warmup_steps=2, r=0.5)),
    (AdamWScheduleFree, dict(lr=2e-3, weight_decay=0.01, warmup_steps=2)),
]


@pytest.mark.parametrize(
    "cls,kwargs", DTENSOR_CASES, ids=[c.__name__ + ("-cautious" if k.get("cautious") else "") for c, k in DTENSOR_CASES]
)
def test_dtensor_params(cls, kwargs, tmp_path):
    """One-rank DTensor (as FSDP2 hands us) gives the same result as plain tensors."""
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    if dist.is_initialized():
        pytest.skip("a process group is already set up in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        torch.manual_seed(0)
        plain = [torch.randn(6, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)]
        grads = [[torch.randn_like(p) for p in plain] for _ in range(5)]
        sharded = [nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in plain]
        plain = [nn.Parameter(p) for p in plain]
        opt_plain, opt_sharded = cls(plain, **kwargs), cls(sharded, **kwargs)
        for opt in (opt_plain, opt_sharded):
            getattr(opt, "train", lambda: None)()  # schedule-free: the training weights in the params
        for gs in grads:
            for p, s, g in zip(plain, sharded, gs):
                p.grad = g.clone()
                s.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
            opt_plain.step()
            opt_sharded.step()
        for opt in (opt_plain, opt_sharded):
            getattr(opt, "eval", lambda: None)()  # ...and the averaged ones, compared too
        for p, s in zip(plain, sharded):
            assert torch.allclose(s.full_tensor(), p, rtol=1e-14, atol=0)
    finally:
        dist.destroy_process_group()


def test_defaults_match_torch():
    """Same defaults as torch for the algorithms torch has; Lion's from the paper."""
    w = [nn.Parameter(torch.zeros(1))]
    for ours, theirs in TORCH_CASES:
        mine, ref = ours(w).defaults, theirs(w).defaults
        assert {k: ref[k] for k in mine if k in ref} == {k: mine[k] for k in mine if k in ref}
        assert not set(mine) - set(ref) - {"cautious"}, set(mine) - set(ref)  # cautious: ours only
    assert Lion(w).defaults == dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False, cautious=False)
    assert math.isclose(AdamW(w).defaults["weight_decay"], 1e-2)
