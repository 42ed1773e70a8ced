"""Bad input fails before training, in one line naming the key and the fix, with exit code 2."""

import os
import zipfile

import pytest
import torch

from optlab.cli import preflight
from optlab.run import CONFIG_DIR


def preflight_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        preflight(list(args), CONFIG_DIR)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "args,expected",
    [
        (["optimizer=adamx"], ["optimizer=adamx is not an option", "adamw", "sgd"]),
        (["trainer.max_epoch=3"], ["unknown key 'trainer.max_epoch'", "+trainer.max_epoch"]),
        (["data.batch_size=abc"], ["data.batch_size='abc'", "positive integer"]),
        (["data.batch_size=0"], ["data.batch_size=0", "positive integer"]),
        (["optimizer.lr=-1e-3"], ["optimizer.lr=-0.001", ">= 0"]),
        (["optimizer=adamw", "optimizer.betas=[0.9,1.0]"], ["optimizer.betas=[0.9, 1.0]", "two numbers in [0, 1)"]),
        (["optimizer=rmsprop", "optimizer.alpha=-1"], ["optimizer.alpha=-1", ">= 0"]),
        (["optimizer=muon", "optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "in [0, 1)"]),
        (["optimizer=torch_adam", "optimizer.eps=-1"], ["optimizer (torch.optim.Adam)", "Invalid epsilon value: -1"]),
        (["trainer.devices=64"], ["trainer.devices=64", "trainer.devices="]),
        (["trainer.precision=8"], ["trainer.precision"]),
        (["+model.net.depth=5"], ["model.net.depth is not an argument of optlab.models.ResNet", "~model.net.depth"]),
        (["ckpt_path=/nonexistent/last.ckpt"], ["ckpt_path=/nonexistent/last.ckpt does not exist"]),
        (["data=cifar10", "data.root=/nonexistent"], ["data.root=/nonexistent", "cifar-10-batches-py"]),
        (["-m", "optimizer.lr=1e-3,-1"], ["optimizer.lr=-1"]),  # the 2nd job of a sweep is checked too
    ],
)
def test_bad_input_is_one_line(capsys, args, expected):
    err = preflight_error(capsys, *args)
    for text in expected:
        assert text in err, err


def test_corrupted_checkpoint(capsys, tmp_path):
    good = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, good)
    preflight([f"ckpt_path={good}"], CONFIG_DIR)  # a sound one passes
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:100])
    assert "corrupted" in preflight_error(capsys, f"ckpt_path={cut}")
    not_lightning = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(1)}, not_lightning)
    assert zipfile.is_zipfile(not_lightning)
    assert "not a Lightning checkpoint" in preflight_error(capsys, f"ckpt_path={not_lightning}")


def test_cli_exit_code_and_nothing_written(cli, tmp_path):
    result = cli(["optimizer.lr=-1", f"paths.log_dir={tmp_path / 'logs'}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: optimizer.lr=-1 is invalid: it must be a number >= 0 (set it with `optimizer.lr=...`)"
    ]
    assert not (tmp_path / "logs").exists()


def test_failing_run_leaves_earlier_runs_intact(cli, tmp_path):
    logs = tmp_path / "logs"
    ok = cli([f"paths.log_dir={logs}", "logger=csv", "trainer.max_epochs=1", "test=false"])
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = {p: p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    bad = cli([f"paths.log_dir={logs}", "logger=csv", "+callbacks.boom._target_=helpers.RaiseAt"])
    assert bad.returncode != 0 and "deliberate failure" in bad.stderr
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} changed"
    assert len([d for d in (logs / "train").iterdir()]) == 2  # the failed run got its own folder


def test_run_ids_never_collide():
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from optlab.rundirs import run_id; print(run_id())"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ) for _ in range(4)]
    ids = [p.communicate()[0].strip() for p in procs]
    assert len(set(ids)) == 4, ids
