"""Muon: equal to torch.optim.Muon on matrices, AdamW (torch's) on the rest, the automatic split,
exact resume, argument checks, convergence, and (slow) FSDP2 shards == one process."""

import io
import random

import pytest
import torch
from torch import nn

from optlab.optim.muon import Muon, lr_scale, zeropower_via_newtonschulz
from optlab.optim.param_groups import param_groups


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: a second thread only adds contention on the shared CI cores (measured 100x
    slower bf16 Newton-Schulz with 2 threads on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()


def set_grads(params_lists, seed: int) -> None:
    """The same random gradient on the i-th param of every list."""
    gen = torch.Generator().manual_seed(seed)
    for ps in zip(*params_lists):
        g = torch.randn(ps[0].shape, generator=gen, dtype=ps[0].dtype)
        for p in ps:
            p.grad = g.clone()


class ConvNet(nn.Module):
    """stem conv -> two hidden convs -> BN -> linear head; Muon should get MUON_NAMES only."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


MUON_NAMES = ["conv1.weight", "conv2.weight"]  # ConvNet: only the hidden convs


def mlp(dtype=torch.float32, seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 3)
    ).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_matches_torch_muon_on_matrices(dtype, seed):
    rng = random.Random(seed)  # random draws, but every adjust_lr_fn and both nesterov values occur
    hp = dict(
        lr=10 ** rng.uniform(-3, -1),
        weight_decay=rng.choice([0.0, 0.1, rng.uniform(0, 0.5)]),
        momentum=rng.uniform(0, 0.99),
        nesterov=seed in (0, 3),
        ns_steps=rng.randint(1, 7),
        adjust_lr_fn=[None, "original", "match_rms_adamw", "spectral_unclamped"][seed],
    )
    torch.manual_seed(seed)
    ours = [torch.randn(s, dtype=dtype, requires_grad=True) for s in [(20, 12), (12, 20), (16, 16), (5, 33)]]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    opt = Muon([{"params": ours, "use_muon": True}], **hp)
    ref_opt = torch.optim.Muon(ref, **hp)
    for step in range(120):
        set_grads([ours, ref], seed * 1000 + step)
        opt.step()
        ref_opt.step()
    for p, r in zip(ours, ref):
        assert rel_err(p, r) <= 1e-6, hp
        assert torch.equal(opt.state[p]["momentum_buffer"], ref_opt.state[r]["momentum_buffer"])


@pytest.mark.parametrize("lr", [torch.tensor(0.05), torch.tensor([0.05])], ids=["0-d", "1-element"])
def test_tensor_lr_matches_torch_muon_and_a_longer_one_is_refused_as_torch_refuses_it(lr):
    """torch's Muon takes a 1-element tensor lr; its weight-decay factor is then computed in the
    tensor's float32, which a float lr rounds differently for this lr and weight decay (0.9815 vs 0.98149997)."""
    torch.manual_seed(0)
    ours = [torch.randn(s, requires_grad=True) for s in [(20, 12), (12, 20)]]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    opt = Muon([{"params": ours, "use_muon": True}], lr=lr, weight_decay=0.37, adjust_lr_fn="match_rms_adamw")
    ref_opt = torch.optim.Muon(ref, lr=lr.clone(), weight_decay=0.37, adjust_lr_fn="match_rms_adamw")
    for step in range(30):
        set_grads([ours, ref], step)
        opt.step()
        ref_opt.step()
    for p, r in zip(ours, ref):
        assert torch.equal(p, r)
    for cls in (Muon, torch.optim.Muon):
        with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
            cls([torch.zeros(3, 3, requires_grad=True)], lr=torch.tensor([0.05, 0.01]))


def test_conv_weight_is_orthogonalized_as_its_matrix():
    """A (out, in, kh, kw) weight steps exactly like torch's Muon on the (out, in*kh*kw) matrix."""
    conv = torch.randn(6, 4, 3, 3, requires_grad=True)
    flat = conv.detach().reshape(6, -1).clone().requires_grad_()
    opt, ref = Muon([{"params": [conv], "use_muon": True}], lr=0.05), torch.optim.Muon([flat], lr=0.05)
    for step in range(5):
        set_grads([[conv]], step)
        flat.grad = conv.grad.reshape(6, -1).clone()
        opt.step()
        ref.step()
    assert torch.equal(conv.detach().reshape(6, -1), flat.detach())
    # and NS really orthogonalizes: singular values of the update are near 1 (within NS's band)
    o = zeropower_via_newtonschulz(torch.randn(8, 36), (3.4445, -4.775, 2.0315), 5, 1e-7)
    s = torch.linalg.svdvals(o.float())
    assert s.min() > 0.5 and s.max() < 1.5
    assert lr_scale(None, 6, 36) == 1.0 and lr_scale("original", 36, 4) == 3.0


@pytest.mark.parametrize("named", [False, True])
def test_automatic_split_of_a_conv_net(named):
    """Stem, head and every ndim < 2 param go to AdamW; the hidden convs to Muon; names or not."""
    net = ConvNet()
    opt = Muon(net.named_parameters() if named else net.parameters())
    muon_params = {id(p) for g in opt.param_groups if g["use_muon"] for p in g["params"]}
    assert muon_params == {id(net.conv1.weight), id(net.conv2.weight)}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    if named:
        assert opt.split()["muon"] == MUON_NAMES
        assert "stem.weight" in opt.split()["adamw"] and "fc.weight" in opt.split()["adamw"]
    else:
        shapes = [label.split(" ", 1)[1] for label in opt.split()["muon"]]
        assert shapes == ["(8, 8, 3, 3)", "(6, 8, 1, 1)"]


def test_param_groups_factory_split_and_keys():
    """Through optlab's factory: names ride along, lr scales carry to the AdamW part, and the
    factory's no-decay group (biases, BN) gets no decay on the AdamW side either."""
    net = ConvNet()
    groups = param_groups(net.named_parameters(), lr=0.02, weight_decay=0.1, lr_scales={"conv2": 0.5})
    opt = Muon(groups, lr=0.02, weight_decay=0.1, adamw_lr=1e-3, adamw_weight_decay=0.05)
    assert opt.split()["muon"] == MUON_NAMES
    by_name = {n: g for g in opt.param_groups for n in g["param_names"]}
    assert by_name["conv1.weight"]["lr"] == 0.02 and by_name["conv2.weight"]["lr"] == 0.01
    assert by_name["conv2.bias"]["use_muon"] is False and by_name["conv2.bias"]["lr"] == pytest.approx(5e-4)
    assert by_name["stem.weight"]["lr"] == 1e-3 and by_name["stem.weight"]["weight_decay"] == 0.05
    assert by_name["stem.weight"]["betas"] == (0.9, 0.95) and by_name["stem.weight"]["eps"] == 1e-10
    assert by_name["bn.weight"]["weight_decay"] == 0.0
    # lr_scales={"conv2": ...} above put conv2 last in the given order; names still found the head.
    # Without names the order rule alone takes conv2 for the head and the head for a hidden layer:
    unnamed = [{k: v for k, v in g.items() if k != "param_names"} for g in groups]
    muon = {id(p) for g in Muon(unnamed).param_groups if g["use_muon"] for p in g["params"]}
    assert muon == {id(net.conv1.weight), id(net.fc.weight)}
    reordered = param_groups(ResNetLike().named_parameters(), lr=0.02, weight_decay=0.1, lr_scales={"body.1": 2})
    assert Muon(reordered).split() == {
        "muon": ["body.0.weight", "body.1.weight"],
        "adamw": ["stem.weight", "head.weight", "stem.bias", "body.0.bias", "head.bias", "body.1.bias"],
    }


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)


def test_explicit_use_muon_wins():
    net = ConvNet()
    opt = Muon(
        [
            {"params": [net.stem.weight], "use_muon": True},
            {"params": [net.conv1.weight, net.fc.weight, net.fc.bias], "use_muon": False, "lr": 0.1},
        ]
    )
    assert [g["use_muon"] for g in opt.param_groups] == [True, False]
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["eps"] == 1e-10
    # a group added later (e.g. by an unfreezing callback) is split by ndim
    opt.add_param_group({"params": [net.conv2.weight, net.conv2.bias]})
    assert [(g["use_muon"], g["params"]) for g in opt.param_groups[2:]] == [
        (True, [net.conv2.weight]),
        (False, [net.conv2.bias]),
    ]
    with pytest.raises(ValueError, match="invalid use_muon='yes'"):
        Muon([{"params": [net.stem.weight], "use_muon": "yes"}])


def test_adamw_side_equals_torch_adamw():
    """An MLP: hidden matrices == torch Muon, first/last layer and biases == torch AdamW."""
    adamw = dict(lr=2e-3, betas=(0.8, 0.97), eps=1e-9, weight_decay=0.03)
    ours, ref = mlp(torch.float64), mlp(torch.float64)
    opt = Muon(
        ours.named_parameters(),
        lr=0.02,
        weight_decay=0.05,  # names "0".."6": order rule
        **{f"adamw_{k}": v for k, v in adamw.items()},
    )
    hidden = [1, 2]  # ref's 2nd and 3rd Linear weights
    lin = [m for m in ref if isinstance(m, nn.Linear)]
    ref_muon = torch.optim.Muon([lin[i].weight for i in hidden], lr=0.02, weight_decay=0.05)
    ref_adamw = torch.optim.AdamW([p for p in ref.parameters() if all(p is not lin[i].weight for i in hidden)], **adamw)
    assert opt.split()["muon"] == ["2.weight", "4.weight"] and len(opt.split()["adamw"]) == 6
    for step in range(100):
        set_grads([list(ours.parameters()), list(ref.parameters())], step)
        opt.step()
        ref_muon.step()
        ref_adamw.step()
    for p, r in zip(ours.parameters(), ref.parameters()):
        assert rel_err(p, r) <= 1e-6
    st = opt.state[ours[0].weight]
    assert set(st) == {"step", "exp_avg", "exp_avg_sq"} and st["step"].item() == 100
    assert set(opt.state[ours[2].weight]) == {"momentum_buffer"}


def test_state_dict_round_trip_is_exact():
    """Train N, save, new model + optimizer, load, train M == N + M uninterrupted, bit for bit."""

    def batches(i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)

    def train(net, opt, steps):
        for i in steps:
            x, y = batches(i)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

    def fresh():
        torch.manual_seed(0)
        net = ConvNet()
        return net, Muon(param_groups(net.named_parameters(), 0.02, 0.1), lr=0.02, weight_decay=0.1)

    net, opt = fresh()
    train(net, opt, range(10))
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buf)
    train(net, opt, range(10, 25))

    net2, opt2 = fresh()
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    net2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    train(net2, opt2, range(10, 25))
    for (name, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), name
    for p, q in zip(net.parameters(), net2.parameters()):
        assert opt.state[p].keys() == opt2.state[q].keys()
        assert all(torch.equal(opt.state[p][k], opt2.state[q][k]) for k in opt.state[p])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lr", -0.1),
        ("weight_decay", -1.0),
        ("momentum", 1.0),
        ("momentum", -0.5),
        ("nesterov", "yes"),
        ("ns_coefficients", (1.0, 2.0)),
        ("eps", -1e-7),
        ("ns_steps", 0),
        ("ns_steps", 100),
        ("ns_steps", 2.5),
        ("adjust_lr_fn", "rms"),
        ("adamw_lr", -1.0),
        ("adamw_betas", (0.9, 1.0)),
        ("adamw_betas", (0.9,)),
        ("adamw_eps", -1.0),
        ("adamw_weight_decay", float("nan")),
    ],
)
def test_bad_arguments_name_the_argument(name, value):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        Muon(mlp().parameters(), **{name: value})


def test_bad_group_value_and_1d_muon_param_are_rejected():
    net = mlp()
    with pytest.raises(ValueError, match=r"invalid momentum=1\.5 \(param group 0\)"):
        Muon([{"params": net.parameters(), "momentum": 1.5}])
    with pytest.raises(ValueError, match=r"use_muon=True .*0\.bias of shape \(32,\).*use_muon=False"):
        Muon([{"params": list(net.named_parameters())[:2], "use_muon": True}])
    with pytest.raises(ValueError, match=r"use_muon=True .*shape \(32,\)"):
        Muon([{"params": [net[0].bias], "use_muon": True}])


def test_trains_a_small_mlp():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, :3] @ torch.randn(3, 3)).argmax(1)
    net = mlp()
    opt = Muon(net.parameters(), lr=0.02, adamw_lr=3e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::15]


# ---- FSDP2: two CPU processes (gloo), each holding half of every matrix ----


def _fsdp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from helpers import full_state

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        net = _fsdp_model()
        for layer in net:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(net)
        _fsdp_train(net)
        state = full_state(net)  # collective: every rank gathers
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


def _fsdp_model() -> nn.Sequential:
    torch.manual_seed(0)  # odd row counts (7, 9) make uneven dim-0 shards
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.ReLU(),
        nn.Linear(16, 7),
        nn.ReLU(),
        nn.Linear(7, 9),
        nn.ReLU(),
        nn.Linear(9, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def _fsdp_train(net: nn.Module) -> Muon:
    opt = Muon(net.parameters(), lr=0.05, weight_decay=0.1, adamw_lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):  # every rank sees the same batch, so the averaged gradient is exact
        x, y = torch.randn(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return opt


@pytest.mark.slow
def test_fsdp2_sharded_equals_single_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "fsdp.pt"
    mp.spawn(_fsdp_worker, args=(2, port, str(out)), nprocs=2, join=True)
    sharded = torch.load(out, weights_only=True)

    net = _fsdp_model()
    opt = _fsdp_train(net)
    assert len(opt.split()["muon"]) == 3  # the three hidden matrices, some unevenly sharded
    for name, p in net.state_dict().items():
        assert rel_err(sharded[name], p) <= 1e-6, name
