"""Schedule-free SGD/AdamW against the `schedulefree` package, and the template's train/eval switch."""

import copy
import io

import pytest
import torch

from optlab.optim.schedulefree import AdamWScheduleFree, SGDScheduleFree
from test_optim_match import TOL, batches, groups_of, make_model, model_err, state_err, train

schedulefree = pytest.importorskip("schedulefree")
CASES = [
    (AdamWScheduleFree, "AdamWScheduleFree", dict(lr=2e-3, weight_decay=0.01, warmup_steps=20, betas=(0.9, 0.99))),
    (SGDScheduleFree, "SGDScheduleFree", dict(lr=0.05, momentum=0.8, weight_decay=0.01, warmup_steps=20, r=0.5)),
]
IDS = [c[1] for c in CASES]


def run(opt, model, data, evaluate_every: int = 50):
    """Train with the switch a training loop makes: eval() for a validation every few steps."""
    for start in range(0, len(data), evaluate_every):
        opt.train()
        train(model, opt, data[start : start + evaluate_every])
        opt.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("ours, name, options", CASES, ids=IDS)
def test_matches_the_package_in_both_modes(ours, name, options, dtype):
    data = batches(200, dtype)
    model, ref_model = make_model(dtype), make_model(dtype)
    groups = [{}, {"lr": options["lr"] / 2}]
    opt, ref = (
        ours(groups_of(model, groups), **options),
        getattr(schedulefree, name)(groups_of(ref_model, groups), **options),
    )
    run(opt, model, data)
    run(ref, ref_model, data)
    assert max(model_err(model, ref_model), state_err(model, opt, ref_model, ref)) <= TOL[dtype]  # x, in eval mode
    opt.train(), ref.train()
    assert model_err(model, ref_model) <= TOL[dtype]  # y
    assert [g["k"] for g in opt.param_groups] == [200, 200]


@pytest.mark.parametrize("ours, name, options", CASES, ids=IDS)
def test_a_param_cut_into_cache_blocks_steps_as_the_package_bit_for_bit(ours, name, options):
    """On CPU ours runs block by block (optlab.optim._foreach.cache_blocks); the math is elementwise,
    so a param larger than a block ends exactly where the package's whole-tensor ops put it."""
    from optlab.optim._foreach import BLOCK

    torch.manual_seed(0)
    w = torch.randn(BLOCK + 1000)
    p, q = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    opt, ref = ours([p], **options), getattr(schedulefree, name)([q], **options)
    opt.train(), ref.train()
    for _ in range(5):
        g = torch.randn_like(w)
        p.grad, q.grad = g.clone(), g.clone()
        opt.step(), ref.step()
    assert torch.equal(p, q) and torch.equal(opt.state[p]["z"], ref.state[q]["z"])


@pytest.mark.parametrize("ours, name, options", CASES, ids=IDS)
@pytest.mark.parametrize("direction", ["ours_to_package", "package_to_ours"])
def test_state_dicts_load_into_each_other(ours, name, options, direction):
    theirs = getattr(schedulefree, name)
    first, second = (ours, theirs) if direction == "ours_to_package" else (theirs, ours)
    data = batches(100, torch.float64)
    model = make_model(torch.float64)
    opt = first(model.parameters(), **options)
    run(opt, model, data[:50])  # saved in eval mode, as checkpoints are
    resumed_model = copy.deepcopy(model)
    resumed = second(resumed_model.parameters(), **options)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run(opt, model, data[50:])
    run(resumed, resumed_model, data[50:])
    assert model_err(resumed_model, model) <= TOL[torch.float64]


def test_a_step_in_eval_mode_says_what_to_do():
    w = torch.nn.Parameter(torch.ones(2))
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"call optimizer.train\(\) before training steps"):
        AdamWScheduleFree([w]).step()


def test_the_template_switches_modes_and_needs_no_schedule(make_cfg, tmp_path):
    from optlab.run import train as run_template
    from optlab.safe_load import torch_file
    from optlab.validate import ConfigError, validate

    cfg = make_cfg(
        "optimizer=adamw_schedulefree",
        "logger=none",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2",
    )
    assert not cfg.scheduler, "scheduler=none comes with the optimizer"
    metrics = run_template(cfg)
    (best,) = (tmp_path / "run" / "checkpoints").glob("best-*.ckpt")
    saved = torch_file(best, "ckpt_path")
    assert [g["train_mode"] for g in saved["optimizer_states"][0]["param_groups"]] == [False, False], "saved as x"
    assert [g["k"] for g in saved["optimizer_states"][0]["param_groups"]] in ([4, 4], [8, 8])
    assert metrics["test/acc"] > 0
    with pytest.raises(ConfigError, match="AdamWScheduleFree is schedule-free but a scheduler"):
        validate(make_cfg("optimizer=adamw_schedulefree", "scheduler=cosine"))


def test_batchnorm_statistics_are_recomputed_for_x_and_put_back_for_training():
    from types import SimpleNamespace

    from torch import nn

    from optlab.callbacks.schedulefree import ScheduleFreeModes

    class Net(nn.Sequential):
        device = torch.device("cpu")

    torch.manual_seed(0)
    net = Net(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = AdamWScheduleFree(net.parameters(), lr=0.1)
    opt.train()
    for _ in range(3):
        net(torch.randn(8, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
    training_stats = net[1].running_mean.clone()
    loader = [(torch.randn(8, 3) + 5, None) for _ in range(3)]
    trainer = SimpleNamespace(
        optimizers=[opt],
        datamodule=SimpleNamespace(train_dataloader=lambda: loader),
        strategy=SimpleNamespace(batch_to_device=lambda batch: batch),  # the data module's transfer hooks run there
    )
    callback, rng = ScheduleFreeModes(bn_batches=2), torch.get_rng_state()
    net.eval()
    callback.on_validation_start(trainer, net)
    assert not opt.param_groups[0]["train_mode"] and not net.training
    with torch.no_grad():  # the cumulative mean over the 2 batches, with the x weights now in place
        expected = torch.stack([net[0](x).mean(0) for x, _ in loader[:2]]).mean(0)
    assert torch.allclose(net[1].running_mean, expected, atol=1e-6)
    assert torch.equal(torch.get_rng_state(), rng), "the training run's random draws are not disturbed"
    callback.on_train_batch_start(trainer, net, None, 0)
    assert opt.param_groups[0]["train_mode"] and torch.equal(net[1].running_mean, training_stats)
