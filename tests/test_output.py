"""What a user sees: a default run prints a short, useful console, and its train.log holds it."""

import re
from pathlib import Path

import pytest

NOISE = [
    "wandb:",
    "v_num",
    "Test metric",
    "FLOPs",
    "TPU available",
    "anonymous",
    "Loading `train_dataloader`",
    "LeafSpec",
    "srun",
    "Restoring states",
    "Tip:",
    "MulticlassAccuracy",
    "MeanMetric",
]


def test_a_default_run_prints_at_most_30_useful_lines_and_its_log_holds_them(cli, make_cfg, tmp_path):
    result = cli(["trainer.max_epochs=1", f"paths.log_dir={tmp_path}"], WANDB_SILENT="false")  # W&B's own quiet
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # the default run prints the same lines with one epoch line per epoch (1 here, to stay quick)
    epochs = make_cfg().trainer.max_epochs
    epoch_lines = [line for line in console if line.startswith("Epoch ")]
    assert len(epoch_lines) == 1 and "_step" not in epoch_lines[0], epoch_lines
    assert len(console) - 1 + epochs <= 30, "\n".join(console)
    for noise in NOISE:
        assert noise not in result.stdout + result.stderr, noise
    assert len(re.findall(r"test/acc", result.stdout)) == 1, "one final table, not Lightning's and W&B's too"
    assert re.search(r"^examples_seen\s+\d+\s*$", result.stdout, re.M), "counts print as integers"
    assert re.search(
        r"^time: training \(fit, validation included\) [\d.]+ s; this run [\d.]+ s; the whole command",
        result.stdout,
        re.M,
    )
    assert re.search(r"^W&B offline run: .*offline-run-\S+ \(upload: wandb sync ", result.stdout, re.M)
    assert re.search(r"^net\.blocks\s+Sequential", result.stdout, re.M), "the summary lists the net's layers"
    run_dir = Path(re.search(r"^run dir: (\S+)  \(tested checkpoints/\S+\.ckpt\)$", result.stdout, re.M).group(1))
    logged = [line for line in (run_dir / "train.log").read_text().splitlines() if line.strip()]
    assert sorted(logged) == sorted(console), "train.log holds what the console showed"
    # the run's picture, from what it logged
    import json

    import matplotlib.image

    image = matplotlib.image.imread(run_dir / "curves.png")
    assert image.shape[0] >= 500 and image.shape[1] >= 800, image.shape
    assert "data:image/png;base64," in (run_dir / "curves.html").read_text()
    rows = [json.loads(line) for line in (run_dir / "curves.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["val/acc"] for r in rows if "val/acc" in r][-1] == pytest.approx(metrics["val/acc"])
    assert [r["train/loss"] for r in rows if "train/loss" in r][-1] == pytest.approx(metrics["train/loss"])
    assert any("grad_to_weight/max" in r and "lr" in r for r in rows), "logging steps carry lr and the ratio"
