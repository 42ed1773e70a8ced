"""The W&B run (offline) holds the resolved config and the logged metrics, read back from its file."""

from pathlib import Path

import pytest

from optlab.run import train
from wandb_records import config, history, records


def run_file(run_dir: Path) -> Path:
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


def test_offline_run_has_config_and_metrics(make_cfg, tmp_path):
    metrics = train(make_cfg("trainer.max_epochs=2", "tags=[pytest]"))
    path = run_file(tmp_path / "run")
    logged = config(path)
    assert logged["optimizer"]["_target_"] == "optlab.optim.SGD"
    assert logged["paths"]["run_dir"] == str(tmp_path / "run")  # resolved, not an interpolation
    rows = history(path)
    val_acc = [r["val/acc"] for r in rows if "val/acc" in r]
    assert len(val_acc) == 2 and val_acc[-1] == pytest.approx(metrics["val/acc"])
    seen = [r["examples_seen"] for r in rows if "train/loss_step" in r]
    assert seen == sorted(seen) and seen[-1] > 0
    assert any("grad_to_weight/max" in r for r in rows)
    assert [r for r in rows if "test/acc" in r][-1]["test/acc"] == pytest.approx(metrics["test/acc"])


def test_run_is_finished_when_training_raises(make_cfg, tmp_path):
    import wandb

    cfg = make_cfg("+callbacks.boom._target_=helpers.RaiseAt", "+callbacks.boom.step=3")
    with pytest.raises(RuntimeError, match="deliberate"):
        train(cfg)
    assert wandb.run is None  # finished, so the next run in this process gets its own
    exits = [r.exit.exit_code for r in records(run_file(tmp_path / "run")) if r.WhichOneof("record_type") == "exit"]
    assert exits == [1]
