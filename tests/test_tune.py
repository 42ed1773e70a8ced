"""tune=lr_find / tune=batch_size: Lightning's Tuner on the configured run, with our optimizers."""

import json

import pytest

from optlab.run import train
from optlab.validate import ConfigError, validate


@pytest.mark.slow  # two short tuner runs: ~15 s
def test_lr_find_writes_its_curve_and_prints_the_override(make_cfg, tmp_path, capsys):
    cfg = make_cfg("tune=lr_find", "tune.num_training=30", "tune.early_stop_threshold=null", "optimizer=adamw")
    found = train(cfg)
    saved = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert len(saved["lr"]) == len(saved["loss"]) == 30
    assert saved["lr"] == sorted(saved["lr"]) and 1e-6 <= saved["lr"][0] < saved["lr"][-1] <= 1.0
    assert found == {"lr": pytest.approx(saved["suggestion"])} and saved["suggestion"] in saved["lr"]
    assert (tmp_path / "run" / "lr_find.png").stat().st_size > 5000
    assert f"lr_find: optimizer.lr={saved['suggestion']:.3g}" in capsys.readouterr().out
    assert not list((tmp_path / "run").glob(".lr_find_*.ckpt")), "the tuner's own checkpoint is removed"


@pytest.mark.slow
def test_batch_size_doubles_until_the_trials_or_the_training_set_end(make_cfg, tmp_path, capsys):
    found = train(make_cfg("tune=batch_size", "tune.init_val=8", "tune.max_trials=2", "logger=none"))
    assert found == {"batch_size": 16.0}  # two sizes tried, 8 and 16: both fit on CPU
    assert "data.batch_size=16  (the largest of the 2 sizes tried)" in capsys.readouterr().out
    found = train(make_cfg("tune=batch_size", "tune.init_val=512", "logger=none", run_dir=tmp_path / "whole"))
    assert found == {"batch_size": 1169.0}  # digits' training set: one batch holds it all
    assert json.loads((tmp_path / "whole" / "batch_size.json").read_text())["whole_training_set"]


def test_a_multi_process_tune_is_refused_in_one_line(make_cfg):
    with pytest.raises(
        ConfigError, match="tune=lr_find runs in one process .* trainer.devices=2; set trainer.devices=1"
    ):
        validate(make_cfg("tune=lr_find", "strategy=ddp", "trainer.devices=2"))
