"""The W&B run (offline) holds the resolved config and the logged metrics, read back from its file."""

import os
from pathlib import Path

import pytest

from optlab.run import train
from wandb_records import config, history, records


def run_file(run_dir: Path) -> Path:
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


def test_offline_run_has_config_and_metrics(make_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # W&B's own quiet settings, not the test's
    environ = dict(os.environ)
    metrics = train(make_cfg("trainer.max_epochs=2", "tags=[pytest]"))
    assert dict(os.environ) == environ, "train() leaves the environment as it found it"
    out = capsys.readouterr()
    sync_dir = run_file(tmp_path / "run").parent
    assert f"W&B offline run: {sync_dir} (upload: wandb sync {sync_dir})" in out.out
    assert "wandb:" not in out.out + out.err, "W&B prints nothing itself (no banner, history or summary)"
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


def test_the_mode_honours_the_environment_unless_the_config_says(monkeypatch):
    from optlab.loggers.wandb import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(None) == "offline"
    for env, mode in (("online", "online"), ("disabled", "disabled"), ("offline", "offline"), ("dryrun", "offline")):
        monkeypatch.setenv("WANDB_MODE", env)
        assert wandb_mode(None) == mode
    assert wandb_mode(True) == "offline" and wandb_mode(False) == "online"  # the config wins
