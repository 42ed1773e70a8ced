"""The learning-rate schedules' shapes (cyclic, wsd) and their one-line config errors."""

import math

import pytest
import torch

from optlab.schedulers import cyclic, wsd


def lrs(make_schedule, total: int, lr: float = 1.0) -> list[float]:
    """The lr of every optimizer step of a `total`-step run."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = make_schedule(optimizer, total_steps=total)
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


def test_cyclic_climbs_and_falls_cycles_times_and_triangular2_halves_each_cycle():
    tri = lrs(lambda o, total_steps: cyclic(o, total_steps, cycles=2, base_lr_factor=0.1), 100)
    assert tri[0] == pytest.approx(0.1) and tri[25] == pytest.approx(1.0) and tri[50] == pytest.approx(0.1)
    assert tri[75] == pytest.approx(1.0) and max(tri) == pytest.approx(1.0) and min(tri) == pytest.approx(0.1)
    assert all(a < b for a, b in zip(tri[:25], tri[1:26])), "rises linearly for a quarter of the run"
    tri2 = lrs(lambda o, total_steps: cyclic(o, total_steps, cycles=2, base_lr_factor=0.1, mode="triangular2"), 100)
    assert tri2[25] == pytest.approx(1.0) and tri2[75] == pytest.approx(0.1 + 0.9 / 2)


@pytest.mark.parametrize("decay, at_half", [("linear", 0.5), ("cosine", 0.5), ("sqrt", 1 - math.sqrt(0.5))])
def test_wsd_warms_up_holds_then_decays(decay, at_half):
    run = lrs(lambda o, total_steps: wsd(o, total_steps, 0.1, 0.2, decay), 100)
    assert run[0] == pytest.approx(1 / 11) and run[9] == pytest.approx(10 / 11)  # 10 warmup steps
    assert run[10:80] == [1.0] * 70  # the stable phase
    assert run[90] == pytest.approx(at_half) and run[99] < 0.25
    assert all(a >= b for a, b in zip(run[80:], run[81:]))


def test_wsd_stable_lr_does_not_depend_on_the_runs_length():
    """So a run extended from a stable-phase checkpoint follows what a longer plan would have."""
    short = lrs(lambda o, total_steps: wsd(o, total_steps, 0.05, 0.2), 200)
    long = lrs(lambda o, total_steps: wsd(o, total_steps, 0.05 * 200 / 400, 0.2), 400)
    assert short[:160] == long[:160]


@pytest.mark.parametrize(
    "override, says",
    [
        ("scheduler.decay=exp", "scheduler.decay='exp' is not one of linear, cosine, sqrt"),
        ("scheduler.decay_fraction=0.99", "must be >= 0 and add up to at most 1"),
    ],
)
def test_bad_wsd_options_stop_before_training(make_cfg, override, says):
    from optlab.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=says):
        validate(make_cfg("scheduler=wsd", override))
    with pytest.raises(ConfigError, match="scheduler.mode='up' is not one of triangular, triangular2"):
        validate(make_cfg("scheduler=cyclic", "scheduler.mode=up"))
