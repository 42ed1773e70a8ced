r"""Muon (Keller Jordan, 2024): momentum orthogonalized by Newton-Schulz, for hidden weight matrices,
with AdamW for every other parameter, in one optimizer that picks the side of each param itself.

For a hidden matrix W (a conv weight is seen as the matrix (out, in * kh * kw)), gradient g:

    B <- mu * B + (1 - mu) * g                          momentum (an EMA, as torch.optim.Muon)
    M <- (1 - mu) * g + mu * B   if nesterov else B      look-ahead
    O <- NS_k(M) ~= U V^T, where M = U S V^T (SVD)       "orthogonalize": singular values -> ~1
    W <- W * (1 - lr * wd) - lr * s(shape) * O           s = sqrt(max(1, out/in)) ("original"),
                                                         0.2 * sqrt(max(out, in)) ("match_rms_adamw")

Why orthogonalize: a matrix gradient is dominated by a few large singular directions; O moves
every direction at the same rate (steepest descent under the spectral norm), so the rare
directions that matter for learning are not drowned out.
Why Newton-Schulz and these coefficients: an SVD is slow on accelerators, but an odd polynomial
p(x) = a x + b x^3 + c x^5 applied as X <- a X + b (X X^T) X + c (X X^T)^2 X acts on each singular
value alone, with matmuls only. After dividing X by its Frobenius norm all singular values lie
in (0, 1]. (a, b, c) = (3.4445, -4.775, 2.0315) trade exactness for speed: the slope at 0 is
steep (a = 3.4, so small singular values grow ~3.4x per step) and 5 steps suffice, but the
iteration oscillates around 1 instead of converging to it (values land in roughly [0.7, 1.2]),
which does not hurt training. It runs in bfloat16, as torch.optim.Muon does.

Which params get Muon: a group's `use_muon` (True/False) wins; otherwise every param with ndim >= 2
except the input side and the output side of the network (stem conv / embedding, classifier
head), found by position: the first and the last such param in the order given. Where names are
known (`param_names`, as `optlab.optim.param_groups` adds) and a module name says which params are
the input side (STEM_NAMES) or the output side (HEAD_NAMES), the names decide that side instead:
the factory's lr_scales can reorder groups, so "last given" is not always the head. Biases and
norm gains (ndim < 2) always go to AdamW. Each group is split into a Muon group and an AdamW
group, so `param_groups[i]["use_muon"]` and `split()` tell the choice, and LR schedulers, which
scale every group's "lr", drive both sides.

Matches torch.optim.Muon (same arguments, defaults, `momentum_buffer` state, floating-point
order) on 2-D params; the AdamW side is `optlab.optim.adam.adam_update` with torch AdamW's
state keys. FSDP2 (DTensor shards): each rank gathers the whole update matrix, orthogonalizes it
and keeps its own shard.
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import by_device_and_dtype, closure_loss, grads_of_groups, new_step
from optlab.optim.adam import adam_update
from optlab.optim.hyperparameters import HyperparameterError, check_tensor_hyperparameters, value

try:
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # a torch build without torch.distributed
    DTensor = None

ADJUST_LR_FNS = (None, "original", "match_rms_adamw", "spectral_unclamped")
# Module names (one dotted component) of matrices that are not hidden layers. Orthogonalizing an
# embedding is wrong (a row only gets gradient when its token is seen), and the stem and a small
# classifier head have too few directions to equalize, so they use AdamW (Jordan; Moonshot).
STEM_NAMES = frozenset({"stem", "embed", "embedding", "embeddings", "tok_embeddings", "wte", "wpe"})
HEAD_NAMES = frozenset({"head", "classifier", "lm_head", "fc"})  # fc: torchvision's classifier


def zeropower_via_newtonschulz(g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> Tensor:
    """~U V^T of the 2-D matrix g = U S V^T, in bfloat16 (see the module docstring)."""
    a, b, c = coefficients
    x = g.to(torch.bfloat16, copy=True)  # a copy even for bf16 input: g may be the momentum buffer
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T  # iterate on the wide side so the Gram matrix X X^T is the small one
    x.div_(x.norm().clamp(min=eps))  # spectral norm <= Frobenius norm = 1: inside p's basin
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.addmm(x, poly, x, beta=a)  # a X + (b A + c A^2) X
    return x.T if tall else x


def lr_scale(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """Per-shape lr multiplier, so one lr fits matrices of every shape (cols = fan-in)."""
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))  # Keller Jordan: O's RMS shrinks as out/in grows
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))  # Moonshot: RMS of the update ~ AdamW's, reuse its lr
    return math.sqrt(rows / cols)  # "spectral_unclamped" (Bernstein)


def _check(args: dict, where: str) -> None:
    """ValueError naming the first invalid hyperparameter among those present in `args`."""

    def bad(name: str, rule: str) -> None:
        raise HyperparameterError(
            f"Muon: invalid {name}={args[name]!r} {where}: {rule}", name, rule.removeprefix("must be ")
        )

    def number(x) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    check_tensor_hyperparameters(args.get("lr"))  # torch's Muon takes a 1-element tensor lr, as here
    for name in ("lr", "weight_decay", "eps", "adamw_lr", "adamw_weight_decay", "adamw_eps"):
        x = value(args[name]) if name == "lr" and name in args else args.get(name)
        if name in args and not (number(x) and x >= 0):
            bad(name, "must be a number >= 0")
    if "momentum" in args and not (number(args["momentum"]) and 0 <= args["momentum"] < 1):
        bad("momentum", "must be in [0, 1)")
    for name in ("betas", "adamw_betas"):
        if name in args and not (len(args[name]) == 2 and all(number(b) and 0 <= b < 1 for b in args[name])):
            bad(name, "must be two numbers in [0, 1)")
    if "ns_coefficients" in args and not (
        len(args["ns_coefficients"]) == 3 and all(number(x) for x in args["ns_coefficients"])
    ):
        bad("ns_coefficients", "must be three numbers (a, b, c)")
    if "ns_steps" in args and not (isinstance(args["ns_steps"], int) and 1 <= args["ns_steps"] < 100):
        bad("ns_steps", "must be an int in [1, 100)")
    if "adjust_lr_fn" in args and args["adjust_lr_fn"] not in ADJUST_LR_FNS:
        bad("adjust_lr_fn", f"must be one of {list(ADJUST_LR_FNS)}")
    if "nesterov" in args and not isinstance(args["nesterov"], bool):
        bad("nesterov", "must be True or False")


def _unpack(group: dict) -> dict:
    """A copy of a param group with `params` a list of tensors (names moved to `param_names`)."""
    group = dict(group)
    params = group["params"]
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, set):
        raise TypeError("Muon: params must be an ordered collection (a list), not a set")
    params = list(params)
    if params and all(isinstance(p, tuple) for p in params):  # model.named_parameters()
        group["param_names"] = [n for n, _ in params]
        params = [p for _, p in params]
    group["params"] = params
    return group


def _named(name: str | None, modules: frozenset) -> bool:
    """Whether the param's module path ("blocks.0.head" of "blocks.0.head.weight") has one of `modules`."""
    return name is not None and any(part in modules for part in name.split(".")[:-1])


class Muon(Optimizer):
    """Muon for hidden matrices + AdamW for the rest; see the module docstring.

    The first nine arguments are torch.optim.Muon's, with its defaults. The AdamW side defaults
    follow Keller Jordan's MuonWithAuxAdam recipe (KellerJordan/Muon README): lr 3e-4, the
    AdamW lr that pairs with Muon's 0.02; betas (0.9, 0.95), whose faster second moment is the
    modded-nanogpt/LLM practice; eps 1e-10; weight_decay 0.01.

    Per group: `use_muon`, any Muon key, and `adamw_lr`, `adamw_betas`, `adamw_eps`,
    `adamw_weight_decay`. The AdamW part of a group gets adamw_lr times (group lr / lr), so
    lr scales such as param_groups' lr_scales carry over, and no weight decay if the group sets
    weight_decay=0 (param_groups' bias/norm group). In a `use_muon=False` group, `lr`, `betas`,
    `eps` and `weight_decay` are AdamW's own (defaulting to the adamw_* values).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float = 0.01,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=tuple(ns_coefficients),
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            adamw_lr=adamw_lr,
            adamw_betas=tuple(adamw_betas),
            adamw_eps=adamw_eps,
            adamw_weight_decay=adamw_weight_decay,
        )
        _check(defaults, "(argument)")
        if isinstance(params, Tensor):
            raise TypeError("Muon: params must be an iterable of tensors or dicts, not a tensor")
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        groups = [_unpack(g) for g in groups]
        # The automatic choice needs every param in the order given (stem first, head last), so
        # it is made here, before Optimizer.__init__ adds the groups one by one.
        matrices = [
            (p, name)
            for g in groups
            for p, name in zip(g["params"], g.get("param_names") or [None] * len(g["params"]))
            if p.ndim >= 2
        ]
        edges = set()
        for names, position in ((STEM_NAMES, 0), (HEAD_NAMES, -1)):
            named = [p for p, name in matrices if _named(name, names)]
            if named:
                edges.update(map(id, named))
            elif matrices:
                edges.add(id(matrices[position][0]))
        self._auto = {id(p): id(p) not in edges for p, _ in matrices}  # absent (ndim < 2): AdamW
        super().__init__(groups, defaults)
        del self._auto

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, split into its Muon part and its AdamW part (either may be absent).

        Groups added after construction (e.g. by a finetuning callback) without `use_muon` send
        ndim >= 2 params to Muon unless named as a stem or head: the model order is unknown there.
        """
        group = _unpack(param_group)
        params, names = group.pop("params"), group.pop("param_names", None)
        explicit = group.pop("use_muon", None)
        where = f"(param group {len(self.param_groups)})"
        if explicit not in (None, True, False):
            raise ValueError(f"Muon: invalid use_muon={explicit!r} {where}: must be True, False or unset")
        _check(group, where)
        auto = getattr(self, "_auto", {})
        flags = []
        for i, p in enumerate(params):
            name = names[i] if names else None
            if explicit is None:
                flags.append(auto.get(id(p), p.ndim >= 2 and not _named(name, STEM_NAMES | HEAD_NAMES)))
            elif explicit and p.ndim < 2:
                raise ValueError(
                    f"Muon: use_muon=True {where} for {name or 'a parameter'} of shape {tuple(p.shape)}: "
                    "Muon orthogonalizes matrices (ndim >= 2); biases and norm weights need AdamW, "
                    "so put them in a use_muon=False group or leave use_muon unset"
                )
            else:
                flags.append(bool(explicit))
        sides = [s for s in (True, False) if s in flags] or [True if explicit is None else bool(explicit)]
        for use_muon in sides:
            part = dict(group, use_muon=use_muon, params=[p for p, f in zip(params, flags) if f == use_muon])
            if names is not None:
                part["param_names"] = [n for n, f in zip(names, flags) if f == use_muon]
            if not use_muon:
                self._adamw_keys(part, explicit is False)
            super().add_param_group(part)

    def _adamw_keys(self, part: dict, plain: bool) -> None:
        """Set lr, betas, eps, weight_decay of an AdamW part (see the class docstring)."""
        d = self.defaults
        get = lambda key: part.get("adamw_" + key, d["adamw_" + key])  # noqa: E731
        if plain:  # a use_muon=False group: its own keys are AdamW's
            for key in ("lr", "betas", "eps", "weight_decay"):
                part[key] = part[key] if key in part else get(key)
            return
        scale = part["lr"] / d["lr"] if "lr" in part and d["lr"] > 0 else 1.0
        part["lr"] = part["adamw_lr"] if "adamw_lr" in part else d["adamw_lr"] * scale
        part["weight_decay"] = 0.0 if part.get("weight_decay", None) == 0 else get("weight_decay")
        part["betas"], part["eps"] = get("betas"), get("eps")

    def split(self) -> dict[str, list[str]]:
        """Which params use Muon and which AdamW: names when known, else group index and shape."""
        out: dict[str, list[str]] = {"muon": [], "adamw": []}
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                label = (
                    group["param_names"][i] if "param_names" in group else f"param_groups[{gi}][{i}] {tuple(p.shape)}"
                )
                out["muon" if group["use_muon"] else "adamw"].append(label)
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        for group, params, grads in grads_of_groups(self):
            if params:
                (self._muon_step if group["use_muon"] else self._adamw_step)(group, params, grads)
        return loss

    def _muon_step(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        bufs = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        if isinstance(lr, Tensor):  # 1-element (checked): a 0-d tensor, as torch's _to_scalar makes it
            lr = lr.reshape(())
        for ps, gs, bs in by_device_and_dtype(params, grads, bufs):
            torch._foreach_lerp_(bs, gs, 1 - mu)
            updates = torch._foreach_lerp(gs, bs, mu) if group["nesterov"] else bs
            if wd != 0:  # decoupled decay, by the unscaled lr; a tensor lr's factor rounds as torch's does
                torch._foreach_mul_(ps, 1 - lr * wd)
            # One Newton-Schulz per matrix: stacking same-shape matrices into bmm gained under 10%
            # on CPU (measured), and the loop keeps torch.optim.Muon's rounding on every device.
            for p, u in zip(ps, updates):
                rows = p.shape[0]
                o = self._orthogonalize(u, group)
                p.add_(o, alpha=-lr * lr_scale(group["adjust_lr_fn"], rows, p.numel() // rows))

    @staticmethod
    def _orthogonalize(u: Tensor, group: dict) -> Tensor:
        """NS of u seen as (out, fan_in), back in u's shape, dtype and (for a DTensor) sharding."""
        sharded = DTensor is not None and isinstance(u, DTensor)
        # FSDP2 shards dim 0 across ranks, but NS needs the whole matrix: gather it, orthogonalize
        # it (every rank the same), and keep this rank's shard, cut the way the placement cuts.
        full = u.full_tensor() if sharded else u
        o = zeropower_via_newtonschulz(
            full.reshape(full.shape[0], -1), group["ns_coefficients"], group["ns_steps"], group["eps"]
        )
        # bf16 -> param dtype is exact, so adding this equals torch's mixed-dtype add bit for bit.
        o = o.to(u.dtype).reshape(full.shape)
        if sharded:
            o = distribute_tensor(o, u.device_mesh, u.placements, src_data_rank=None)  # local cut, no comms
        return o

    def _adamw_step(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = []
        for p in params:
            state = self.state[p]
            if not state:  # torch AdamW's state keys, so its checkpoints and ours line up
                state["step"] = new_step()
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states.append(state)
        beta1, beta2 = group["betas"]
        adam_update(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=True,
            amsgrad=False,
            maximize=False,
        )
