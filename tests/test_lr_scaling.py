"""optimizer.lr_scaling: the lr for the global batch (batch x processes x accumulation)."""

import math

import pytest

from optlab.optim.lr_scaling import scaled_lr
from optlab.run import _instantiate_all
from optlab.validate import ConfigError, validate


def test_rules():
    assert scaled_lr(0.1, 512, "linear", 256) == pytest.approx(0.2)
    assert scaled_lr(0.1, 64, "sqrt", 256) == pytest.approx(0.05)
    assert scaled_lr(0.1, 64, "none", 256) == 0.1
    with pytest.raises(ValueError, match="optimizer.lr_scaling.rule='cubic' is not one of none, linear, sqrt"):
        scaled_lr(0.1, 64, "cubic")


@pytest.mark.parametrize(
    "extra, processes, accumulation",
    [([], 1, 1), (["trainer.accumulate_grad_batches=3"], 1, 3), (["strategy=ddp", "trainer.devices=2"], 2, 1)],
)
def test_the_built_optimizer_gets_the_lr_of_the_global_batch(make_cfg, extra, processes, accumulation):
    cfg = make_cfg("logger=none", "+optimizer.lr_scaling.rule=sqrt", "+optimizer.lr_scaling.base_batch_size=16", *extra)
    _, model, trainer = _instantiate_all(cfg)
    global_batch = cfg.data.batch_size * processes * accumulation
    assert trainer.world_size * trainer.accumulate_grad_batches == processes * accumulation
    expected = cfg.optimizer.lr * math.sqrt(global_batch / 16)
    assert model.optimizer_factory.keywords["lr"] == pytest.approx(expected)


def test_bad_settings_are_one_line_config_errors(make_cfg):
    with pytest.raises(ConfigError, match="optimizer.lr_scaling.base_batch_size=0 must be a positive integer"):
        validate(make_cfg("+optimizer.lr_scaling.rule=linear", "+optimizer.lr_scaling.base_batch_size=0"))
    with pytest.raises(ConfigError, match="rule='cubic'"):
        validate(make_cfg("+optimizer.lr_scaling.rule=cubic"))
