"""optlab.landscape: function values, trajectories (ours == torch's, SGD by hand), the CLI's files and errors."""

import json
import math
import struct

import pytest
import torch

from optlab.landscape import FUNCTIONS, OPTIMIZERS, Ravine, Rosenbrock, TestFunction, TriModal, trajectory
from optlab.landscape.cli import main
from optlab.landscape.trajectory import family

F64 = torch.float64
WELL_DEPTH = 1 / (2 * math.pi * 0.2**2)  # peak of one normalized 2-D Gaussian with sigma 0.2


def grad_at(fn, point):
    p = torch.tensor(point, dtype=F64, requires_grad=True)
    fn(p).backward()
    return p.grad


# --- the functions -------------------------------------------------------------------------------


def test_registry_holds_the_classic_functions():
    assert list(FUNCTIONS) == ["ravine", "trimodal", "rosenbrock"]
    assert isinstance(FUNCTIONS["ravine"], Ravine) and isinstance(FUNCTIONS["trimodal"], TriModal)
    for fn in FUNCTIONS.values():
        (x0, x1), (y0, y1) = fn.bounds
        assert x0 <= fn.start[0] <= x1 and y0 <= fn.start[1] <= y1, fn.name
        assert {"sgd", "rmsprop", "adam", "adamw"} <= set(fn.lrs), fn.name


def test_adding_a_function_is_one_subclass():
    try:

        class Bowl(TestFunction):
            name = "_test_bowl"
            minima = ((0.0, 0.0),)

            def __call__(self, xy):
                return (xy**2).sum(-1)

        assert isinstance(FUNCTIONS["_test_bowl"], Bowl)
        path = trajectory("_test_bowl", (1.0, -2.0), torch.optim.SGD, 3, lr=0.25, dtype=F64)
        torch.testing.assert_close(path[:, 0], torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=F64))
        with pytest.raises(ValueError, match="already registered"):
            type("Again", (TestFunction,), {"name": "_test_bowl"})
    finally:
        FUNCTIONS.pop("_test_bowl", None)


def test_rosenbrock_values_and_minimum():
    fn = Rosenbrock()
    assert fn(torch.tensor([1.0, 1.0], dtype=F64)).item() == 1.0  # the +1 shift
    assert fn(torch.tensor([0.0, 0.0], dtype=F64)).item() == 2.0
    assert fn(torch.tensor([-1.2, 1.0], dtype=F64)).item() == pytest.approx(2.2**2 + 100 * 0.44**2 + 1)
    assert grad_at(fn, [1.0, 1.0]).abs().max().item() == 0.0
    assert fn.minima == ((1.0, 1.0),)


def test_trimodal_minima_are_local_minima_at_the_means():
    fn = TriModal()
    assert fn.minima == ((1.0, -0.5), (-1.0, 0.5), (-0.5, -0.8))
    for m in fn.minima:
        value = fn(torch.tensor(m, dtype=F64)).item()
        assert value == pytest.approx(-WELL_DEPTH, abs=1e-9)
        assert grad_at(fn, m).norm().item() < 1e-6
        for r in (0.01, 0.05, 0.2):
            ring = torch.tensor(m, dtype=F64) + r * torch.stack(
                [torch.cos(t := torch.linspace(0, 2 * math.pi, 16, dtype=F64)), torch.sin(t)], dim=-1
            )
            assert (fn(ring) > value).all()
    assert abs(fn(torch.tensor([3.0, 3.0], dtype=F64)).item()) < 1e-20  # flat far away


def test_ravine_has_a_valley_but_no_finite_minimum():
    fn = Ravine()
    assert fn.minima == () and fn.valley is not None
    ys = torch.linspace(-20, 20, 41, dtype=F64)
    floor = fn(torch.stack([torch.zeros_like(ys), ys], -1))
    torch.testing.assert_close(floor, torch.sigmoid(ys))  # f(0, y) = sigmoid(y): falls forever towards 0
    assert (floor[1:] > floor[:-1]).all() and floor[0].item() < 1e-8
    for x in (-2.0, -0.3, 0.1, 1.0):  # off the floor is higher
        assert (fn(torch.stack([torch.full_like(ys, x), ys], -1)) > floor).all()
    x = torch.tensor([0.7, -1.3], dtype=F64)
    assert fn(torch.stack([x, torch.tensor([0.2, 0.2], dtype=F64)], -1)).tolist() == pytest.approx(
        (torch.tanh(x) ** 2 + 0.01 * x.abs() + torch.sigmoid(torch.tensor(0.2, dtype=F64))).tolist()
    )


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functions_evaluate_batches_pointwise(name):
    fn = FUNCTIONS[name]
    grid = torch.randn(4, 5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    values = fn(grid)
    assert values.shape == (4, 5)
    torch.testing.assert_close(values[2, 3], fn(grid[2, 3]))


# --- trajectory ----------------------------------------------------------------------------------


def test_trajectory_shape_first_row_and_dtype():
    start = torch.tensor([-1.2, 1.0], dtype=F64)
    path = trajectory(Rosenbrock(), start, torch.optim.Adam, 7, lr=0.1)
    assert path.shape == (8, 2) and path.dtype == F64 and not path.requires_grad
    assert torch.equal(path[0], start) and start.tolist() == [-1.2, 1.0]  # the start point is not moved
    assert trajectory("rosenbrock", [-1.2, 1.0], "torch_sgd", 3, lr=1e-3).dtype == torch.float32
    assert trajectory("rosenbrock", None, "torch_sgd", 0, dtype=F64).tolist() == [[-1.2, 1.0]]
    with pytest.raises(KeyError, match="choose one of"):
        trajectory("nope", None, torch.optim.SGD, 1)


def test_rosenbrock_sgd_path_by_hand():
    lr, n = 1e-3, 25
    x, y = -1.2, 1.0
    expected = [(x, y)]
    for _ in range(n):  # gradient of (1 - x)^2 + 100 (y - x^2)^2 + 1
        gx = -2 * (1 - x) - 400 * x * (y - x * x)
        gy = 200 * (y - x * x)
        x, y = x - lr * gx, y - lr * gy
        expected.append((x, y))
    expected = torch.tensor(expected, dtype=F64)
    assert expected[1].tolist() == pytest.approx([-1.2 + 0.2156, 1.0 + 0.088])  # g(-1.2, 1) = (-215.6, -88)
    for cls in (torch.optim.SGD, "sgd"):
        path = trajectory(Rosenbrock(), (-1.2, 1.0), cls, n, lr=lr, dtype=F64)
        torch.testing.assert_close(path, expected, rtol=0, atol=1e-12)


PAIRS = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("opt", PAIRS)
def test_ours_match_torch_on_each_function(name, opt):
    """optlab.optim.* against torch.optim.* from the CLI's default start and learning rate."""
    fn = FUNCTIONS[name]
    lr = fn.lrs[family(opt)]
    start = (0.3, -0.2) if (name, opt) == ("trimodal", "sgd") else fn.start  # SGD barely leaves the plateau there
    ours = trajectory(fn, start, opt, 200, lr=lr, dtype=F64)
    theirs = trajectory(fn, start, f"torch_{opt}", 200, lr=lr, dtype=F64)
    assert OPTIMIZERS[opt][0].startswith("optlab.optim.")
    assert torch.isfinite(ours).all() and (ours[-1] - ours[0]).norm() > 0.05  # a path worth comparing
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "opt, hparams",
    [
        ("sgd", dict(lr=1e-3, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        ("sgd", dict(lr=1e-3, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("rmsprop", dict(lr=1e-2, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.01)),
        ("adam", dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01)),
        ("adamw", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
    ],
)
def test_ours_match_torch_with_more_hparams(opt, hparams):
    for fn, start in ((Rosenbrock(), (-1.2, 1.0)), (TriModal(), (0.3, -0.2))):
        ours = trajectory(fn, start, opt, 100, dtype=F64, **hparams)
        theirs = trajectory(fn, start, f"torch_{opt}", 100, dtype=F64, **hparams)
        assert torch.isfinite(ours).all() and (ours[-1] - ours[0]).norm() > 0.05
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_trajectory_takes_any_optimizer_subclass():
    class SignSGD(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            with torch.enable_grad():
                loss = closure() if closure else None
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
            return loss

    path = trajectory(Rosenbrock(), (-1.2, 1.0), SignSGD, 3, lr=0.5, dtype=F64)  # g signs: (-, -), (+, +), (-, -)
    assert path.flatten().tolist() == pytest.approx([-1.2, 1.0, -0.7, 1.5, -1.2, 1.0, -0.7, 1.5])
    lbfgs = trajectory(Rosenbrock(), (-1.2, 1.0), torch.optim.LBFGS, 10, lr=1, dtype=F64)  # needs the closure
    assert (lbfgs[-1] - torch.tensor([1.0, 1.0], dtype=F64)).norm() < 1e-4


# --- the CLI -------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_writes_png_html_table_and_record(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--functions",
        "trimodal",
        "rosenbrock",
        "--optimizers",
        "sgd",
        "adam",
        "torch_adam",
        "--iters",
        "40",
        "--lr",
        "adam=0.05",
        "torch_adam=0.05",
        "rosenbrock:sgd=0.002",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "plotly.min.js",
        "rosenbrock.html",
        "rosenbrock.png",
        "run.json",
        "trimodal.html",
        "trimodal.png",
    ]
    import matplotlib.image

    for name in ("trimodal", "rosenbrock"):
        png = (out / f"{name}.png").read_bytes()
        assert png_size(png) == (2000, 600)
        pixels = matplotlib.image.imread(out / f"{name}.png")
        colors = torch.unique(torch.from_numpy(pixels[..., :3]).reshape(-1, 3), dim=0)
        assert len(colors) > 500  # a picture, not a blank
        html = (out / f"{name}.html").read_text()
        assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html and "loss against step" in html
        assert len(html) < 1_000_000 and 'src="plotly.min.js"' in html  # one shared library, offline
        fn = FUNCTIONS[name]
        for opt, lr in (("sgd", 0.002 if name == "rosenbrock" else fn.lrs["sgd"]), ("adam", 0.05)):
            path = trajectory(fn, None, opt, 40, lr=lr)
            assert ",".join(repr(v) for v in path[:6, 0].tolist()) in html  # the path's x coordinates
            assert repr(path[-1, 1].item()) in html
            assert f"{opt} (lr={lr:g})" in html
    record = json.loads((out / "run.json").read_text())
    assert record["argv"] == argv and len(record["runs"]) == 6
    adam = next(r for r in record["runs"] if (r["function"], r["optimizer"]) == ("rosenbrock", "adam"))
    assert adam["class"] == "optlab.optim.adam.Adam" and adam["hparams"] == {"lr": 0.05}
    torch_adam = next(r for r in record["runs"] if (r["function"], r["optimizer"]) == ("rosenbrock", "torch_adam"))
    assert torch_adam["final"] == pytest.approx(adam["final"], abs=1e-6)
    assert adam["final_value"] == pytest.approx(FUNCTIONS["rosenbrock"](torch.tensor(adam["final"], dtype=F64)).item())
    table = capsys.readouterr().out
    assert "to nearest min" in table and "torch_adam" in table and str(out) in table


def test_cli_defaults_are_the_classic_comparison_and_runs_never_collide(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--iters", "2", "--no-png", "--no-html"]) == 0
    assert main(["--iters", "2", "--no-png", "--no-html"]) == 0
    runs = sorted((tmp_path / "logs" / "landscape").iterdir())
    assert len(runs) == 2 and all((r / "run.json").is_file() for r in runs)
    record = json.loads((runs[0] / "run.json").read_text())
    pairs = [(r["function"], r["optimizer"], r["class"]) for r in record["runs"]]
    classes = {
        "sgd": "optlab.optim.sgd.SGD",
        "rmsprop": "optlab.optim.rmsprop.RMSprop",
        "adam": "optlab.optim.adam.Adam",
        "adamw": "optlab.optim.adamw.AdamW",
    }
    assert pairs == [(f, o, classes[o]) for f in FUNCTIONS for o in classes]
    ravine = record["runs"][0]
    assert ravine["distance_to_nearest_minimum"] is None and ravine["hparams"] == {"lr": FUNCTIONS["ravine"].lrs["sgd"]}
    assert "n/a" in capsys.readouterr().out


def test_cli_draws_a_diverging_path(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            ["--functions", "rosenbrock", "--optimizers", "sgd", "--iters", "60", "--lr", "sgd=0.05", "--out", str(out)]
        )
        == 0
    )
    assert png_size((out / "rosenbrock.png").read_bytes()) == (2000, 600)
    assert (out / "plotly.min.js").stat().st_size > 1_000_000  # beside the pages, for all of them
    assert json.loads((out / "run.json").read_text())["runs"][0]["note"] == "diverged"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--functions", "nope"], ["'nope'", "ravine, trimodal, rosenbrock"]),
        (["--optimizers", "adam", "nope"], ["'nope'", "sgd, momentum", "torch_adamw"]),
        (["--optimizers", "no_such_pkg.Opt"], ["no_such_pkg.Opt", "cannot use"]),
        (["--lr", "adam0.1"], ["'adam0.1'", "OPTIMIZER=LR"]),
        (["--lr", "adam=fast"], ["'fast'", "not a number"]),
        (["--lr", "adam=-1"], ["adam=-1", "positive"]),
        (["--lr", "lion=0.1"], ["'lion'", "sgd, rmsprop, adam, adamw"]),
        (["--lr", "banana:adam=0.1"], ["'banana'", "ravine, trimodal, rosenbrock"]),
        (["--iters", "0"], ["--iters 0"]),
        (["--iters", "many"], ["'many'"]),
        (["--dtype", "float16"], ["'float16'", "float32", "float64"]),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m optlab.landscape: error:"), captured.err
    assert all(e in lines[0] for e in expected), lines[0]
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "rosenbrock.png").write_bytes(b"old")
    assert main(["--functions", "rosenbrock", "--iters", "2", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["rosenbrock.png"] and (out / "rosenbrock.png").read_bytes() == b"old"
