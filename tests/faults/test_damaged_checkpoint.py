"""A damaged checkpoint never resumes (issue 18): random bytes written into a tensor's data pass
torch's loader (it reads no CRC) and a resume would train on nan weights. The pre-flight check
verifies every CRC of the archive and the weights' finiteness, and refuses in one line naming the
newest intact checkpoint beside it, with the command that resumes from that one: exit 2, nothing
written. docs/reliability.md, "A damaged checkpoint".
"""

import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from optlab.run import compose_config, train
from test_cli_errors import preflight_error

TINY = [  # one short epoch: 5 batches, 2 validation batches
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "test=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run's checkpoints folder (last.ckpt, best-epoch000.ckpt), made once for the module."""
    base = tmp_path_factory.mktemp("trained")
    train(compose_config([f"paths.log_dir={base / 'logs'}", "logger=none", *TINY], run_dir=base / "run"))
    return base / "run"


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run for this test to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def damage_tensor_bytes(path, size: int = 100_000) -> None:
    """Random bytes over the data of the archive's largest tensor: headers left whole, as a bad disk
    sector or a broken copy leaves them."""
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda i: i.file_size)
    start = largest.header_offset + 200  # past the local header (30 bytes, the name, torch's alignment padding)
    size = min(size, largest.file_size - 400)
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(os.urandom(size))


def test_random_bytes_in_a_tensor_are_refused_naming_the_newest_intact_checkpoint(run, capsys):
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best-epoch000.ckpt"
    damage_tensor_bytes(last)
    torch.load(last, weights_only=True)  # torch's loader does not notice: the damage must be found by us
    err = preflight_error(capsys, f"ckpt_path={last}", "trainer.max_epochs=2")
    assert err.startswith(f"error: ckpt_path={last} is damaged (the CRC check fails for archive/data/"), err
    assert f"the newest intact checkpoint beside it is {best}" in err
    assert f"`python train.py ckpt_path={best}`" in err  # the command to resume from that one


def test_nonfinite_weights_are_refused(run, capsys):
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name][0] = float("nan")
    torch.save(ckpt, last)  # a whole archive (CRCs fine) holding nan weights
    err = preflight_error(capsys, f"ckpt_path={last}")
    assert f"non-finite values: nan in state_dict.{name}" in err
    assert "best-epoch000.ckpt" in err


def test_the_newest_intact_sibling_is_named_and_damaged_ones_skipped(run, capsys):
    folder = run / "checkpoints"
    last = folder / "last.ckpt"
    for i, name in enumerate(["older.ckpt", "newer.ckpt", "newest-but-damaged.ckpt"]):
        shutil.copy(folder / "best-epoch000.ckpt", folder / name)
        os.utime(folder / name, (2e9 + i, 2e9 + i))
    damage_tensor_bytes(folder / "newest-but-damaged.ckpt")
    damage_tensor_bytes(last)
    err = preflight_error(capsys, f"ckpt_path={last}")
    assert f"the newest intact checkpoint beside it is {folder / 'newer.ckpt'}:" in err


def test_no_intact_checkpoint_beside_it(run, capsys):
    folder = run / "checkpoints"
    (folder / "best-epoch000.ckpt").unlink()
    damage_tensor_bytes(folder / "last.ckpt")
    err = preflight_error(capsys, f"ckpt_path={folder / 'last.ckpt'}")
    assert err.endswith(f"no intact checkpoint is beside it in {folder}/: start a new run without ckpt_path")


def test_a_cut_off_checkpoint_names_the_intact_one_too(run, capsys):
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    err = preflight_error(capsys, f"ckpt_path={last}")
    assert "corrupted" in err and str(run / "checkpoints" / "best-epoch000.ckpt") in err


def test_damaged_finetune_weights_are_refused_before_anything_starts(tmp_path, capsys):
    weights = tmp_path / "backbone.pt"
    torch.save({"conv1.weight": torch.randn(64, 3, 7, 7), "bn1.weight": torch.ones(64)}, weights)
    damage_tensor_bytes(weights, size=10_000)
    err = preflight_error(capsys, "model=resnet_finetune", f"model.net.weights={weights}")
    assert err.startswith(f"error: model.net.weights={weights} is damaged (the CRC check fails for "), err


@pytest.mark.slow  # a train.py process: ~13 s here
def test_the_command_line_refusal_exits_2_and_writes_nothing(run, cli):
    last = run / "checkpoints" / "last.ckpt"
    damage_tensor_bytes(last)
    before = {p: p.stat().st_mtime_ns for p in run.parent.rglob("*")}
    result = cli([f"ckpt_path={last}", "trainer.max_epochs=2"], timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is damaged" in lines[0], lines
    best = run / "checkpoints" / "best-epoch000.ckpt"
    assert f"`python train.py trainer.max_epochs=2 ckpt_path={best}`" in lines[0]  # the user's overrides kept
    assert {p: p.stat().st_mtime_ns for p in run.parent.rglob("*")} == before  # no config, log or W&B folder
