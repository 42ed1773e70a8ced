"""In-process training: the default recipe's accuracy, every optimizer x schedule, trainer options."""

import pytest
import torch

from optlab.optim import param_groups
from optlab.run import train

FAST = ["debug=fast_dev_run", "logger=none"]


def test_default_run_reaches_097_test_accuracy(make_cfg):
    metrics = train(make_cfg("logger=none"))
    assert metrics["test/acc"] >= 0.97, metrics
    assert metrics["val/acc_best"] >= metrics["val/acc"]


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw", "lion", "muon"])
@pytest.mark.parametrize("scheduler", ["none", "cosine", "onecycle", "step", "linear"])
def test_fast_dev_run_optimizer_x_scheduler(make_cfg, optimizer, scheduler):
    metrics = train(make_cfg(*FAST, f"optimizer={optimizer}", f"scheduler={scheduler}"))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


@pytest.mark.parametrize(
    "extra",
    [
        ["data=synthetic", "data.shape=[3,16,16]", "data.num_samples=64"],
        ["trainer.precision=bf16-mixed"],
        ["trainer.accumulate_grad_batches=2", "trainer.gradient_clip_val=0.5"],
        ["trainer.gradient_clip_val=0.1", "trainer.gradient_clip_algorithm=value"],
        ["trainer.deterministic=true", "model.net.block=bottleneck", "model.net.widths=[8,16]"],
        ["strategy=fsdp"],
        ["strategy=fsdp", "optimizer=muon"],
        ["strategy=fsdp", "optimizer=lion", "trainer.precision=bf16-mixed"],
    ],
)
def test_fast_dev_run_trainer_options(make_cfg, extra):
    metrics = train(make_cfg(*FAST, *extra))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_ours_and_torch_train_the_same_weights(make_cfg, tmp_path, name):
    """Through the whole template (param groups, schedule, clipping), `optimizer=X` and
    `optimizer=torch_X` end a run with the same weights, bit for bit."""
    weights = []
    for impl in (name, f"torch_{name}"):
        dump = tmp_path / impl / "weights"
        train(
            make_cfg(
                "logger=none",
                "callbacks=none",
                "test=false",
                "trainer.max_epochs=2",
                "trainer.max_steps=25",
                "trainer.gradient_clip_val=1.0",
                "trainer.enable_progress_bar=false",
                f"optimizer={impl}",
                "+callbacks.dump._target_=helpers.DumpWeights",
                f"+callbacks.dump.dir={dump}",
                "+callbacks.dump.start=true",
                run_dir=tmp_path / impl,
            )
        )
        weights.append(torch.load(dump / "rank0.pt"))
    ours, reference = weights
    assert ours.keys() == reference.keys()
    for key in ours:
        assert torch.equal(ours[key], reference[key]), key
    initial = torch.load(tmp_path / name / "weights" / "start-rank0.pt")
    assert not torch.equal(ours["net.head.weight"], initial["net.head.weight"])  # it did train


@pytest.mark.slow
def test_torch_compile(make_cfg):
    metrics = train(make_cfg(*FAST, "model.compile=true"))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_examples_seen_counts_every_sample(make_cfg, tmp_path):
    cfg = make_cfg("logger=csv", "trainer.max_epochs=2", "test=false", "callbacks=none")
    metrics = train(cfg)
    train_size = 1797 - int(1797 * 0.2) - int(1797 * 0.15)
    assert metrics["examples_seen"] == 2 * train_size


def test_checkpoints_last_and_best(make_cfg, tmp_path):
    train(make_cfg("logger=none", "trainer.max_epochs=2", "test=false"))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in names and any(n.startswith("best-") for n in names), names


def test_no_weight_decay_on_biases_and_norms_and_lr_scales():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    net.backbone = torch.nn.Linear(4, 4)
    groups = param_groups(net.named_parameters(), lr=0.1, weight_decay=0.01, lr_scales={"backbone": 0.5})
    by_name = {n: g for g in groups for n in g["param_names"]}
    assert by_name["0.weight"]["weight_decay"] == 0.01 and by_name["0.weight"]["lr"] == 0.1
    assert by_name["0.bias"]["weight_decay"] == 0.0
    assert by_name["1.weight"]["weight_decay"] == 0.0  # a norm weight
    assert by_name["backbone.weight"]["lr"] == pytest.approx(0.05)
    assert by_name["backbone.bias"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_frozen_parameters_are_left_out():
    net = torch.nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    groups = param_groups(net.named_parameters(), lr=0.1, weight_decay=0.0)
    assert [n for g in groups for n in g["param_names"]] == ["weight"]
