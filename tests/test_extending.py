"""docs/extending.md, done for real: a dataset, a network, an optimizer and a strategy, each one
.py + one .yaml in a folder outside the template, found through Hydra's search path."""

import json
import subprocess
from pathlib import Path

from conftest import REPO

EXTENSION = Path(__file__).parent / "extension"


def test_added_pieces_train_from_outside_folder(cli, tmp_path):
    before = subprocess.run(
        ["git", "status", "--porcelain", "--", "conf", "src"], cwd=REPO, capture_output=True, text=True
    ).stdout
    result = cli(
        [
            f"hydra.searchpath=[file://{EXTENSION / 'conf'}]",
            "data=blobs",
            "model=mlp",
            "optimizer=signsgd",
            "strategy=counting",
            "scheduler=none",
            "logger=csv",
            "trainer.max_epochs=3",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        PYTHONPATH=f"{EXTENSION}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "train").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.95, metrics
    resolved = (run / ".hydra" / "config.yaml").read_text()
    for target in ("my_pieces.BlobsDataModule", "my_pieces.MLP", "my_pieces.SignSGD", "my_pieces.CountingStrategy"):
        assert target in resolved
    after = subprocess.run(
        ["git", "status", "--porcelain", "--", "conf", "src"], cwd=REPO, capture_output=True, text=True
    ).stdout
    assert after == before  # the template's own files were not touched


def test_unknown_option_lists_the_added_ones(cli):
    result = cli([f"hydra.searchpath=[file://{EXTENSION / 'conf'}]", "optimizer=signsgdd"], PYTHONPATH=f"{EXTENSION}")
    assert result.returncode == 2
    assert "signsgd" in result.stderr and "adamw" in result.stderr
