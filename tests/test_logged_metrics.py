"""What reaches the loggers: every computed row is written, at the step it belongs to."""

import csv
import logging

import pytest

from optlab.run import optimized_metric, train
from optlab.validate import ConfigError, validate


def csv_rows(run_dir):
    (path,) = run_dir.glob("csv/*/metrics.csv")
    return list(csv.DictReader(path.open()))


def steps_with(rows, key):
    return [int(r["step"]) for r in rows if r.get(key)]


@pytest.mark.parametrize("every, expected_stride", [(None, 10), (20, 20)])
def test_gradient_monitor_rows_share_train_loss_steps(make_cfg, tmp_path, every, expected_stride):
    every_override = "null" if every is None else every
    train(
        make_cfg(
            "logger=csv",
            "trainer.max_epochs=2",
            "test=false",
            "trainer.log_every_n_steps=10",
            f"callbacks.grad_monitor.every_n_steps={every_override}",
            "~callbacks.progress_bar",
        )
    )
    rows = csv_rows(tmp_path / "run")
    loss_steps = steps_with(rows, "train/loss_step")
    grad_steps = steps_with(rows, "grad_norm/total")
    assert loss_steps == list(range(9, 9 + 10 * len(loss_steps), 10))  # 37 steps: 9, 19, 29
    assert grad_steps == [s for s in loss_steps if (s + 1) % expected_stride == 0]
    assert steps_with(rows, "grad_to_weight/max") == grad_steps
    # The epoch means are written once per epoch, with the examples seen so far.
    epochs = [r for r in rows if r.get("train/acc")]
    assert len(epochs) == 2 and all(r["examples_seen"] for r in epochs)


def test_gradient_monitor_interval_must_be_a_logging_step(make_cfg):
    with pytest.raises(ConfigError, match=r"every_n_steps=25 must be a multiple of trainer.log_every_n_steps=10"):
        validate(make_cfg("callbacks.grad_monitor.every_n_steps=25"))


def test_missing_optimized_metric_warns_outside_sweeps(make_cfg, caplog):
    cfg = make_cfg("optimized_metric=val/nonexistent")
    with caplog.at_level(logging.WARNING):
        assert optimized_metric(cfg, {"val/acc": 0.5}) is None
    assert "optimized_metric=val/nonexistent was not logged" in caplog.text
