"""A resumed run's logs hold each step once (issue 18): the interrupted process logged the rest
of the epoch after its last checkpoint; the resumed run logs those steps again. The CSV logger
keeps one metrics.csv per run and drops the rows from the checkpoint on; W&B writes one folder per
process (it never reuses one), all under the run's id, and the run's last line uploads them
together. docs/reliability.md, "Resume after a crash".
"""

import contextlib
import csv
import io

import pytest
import torch

from optlab.run import compose_config, train
from wandb_records import history, records

pytestmark = pytest.mark.slow  # two in-process runs with W&B: ~17 s here

BATCHES = 5  # per epoch
COMMON = [
    "logger=many",  # W&B (offline) and CSV
    f"+trainer.limit_train_batches={BATCHES}",
    "+trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "test=false",
]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, monkeypatch_module):
    """Epoch 0 checkpointed, epoch 1 fails at its 4th batch (rows logged past the checkpoint), then resumed."""
    monkeypatch_module.delenv("WANDB_MODE", raising=False)
    base = tmp_path_factory.mktemp("resumed")
    run = base / "run"
    logs = f"paths.log_dir={base / 'logs'}"
    boom = ["+callbacks.boom._target_=helpers.RaiseAt", f"+callbacks.boom.step={BATCHES + 3}"]
    with pytest.raises(RuntimeError, match="deliberate"):
        train(compose_config([logs, *COMMON, *boom], run_dir=run))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(compose_config([logs, *COMMON, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]))
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_csv_has_every_step_once(resumed):
    run, _ = resumed
    (path,) = run.glob("csv/*/metrics.csv")  # one file for the run, continued by the resume
    rows = list(csv.DictReader(path.open()))
    steps = [int(r["step"]) for r in rows if r["train/loss_step"]]
    assert steps == list(range(2 * BATCHES))  # none twice, none missing
    assert [int(r["epoch"]) for r in rows if r["val/loss"]] == [0, 1]
    assert [int(r["epoch"]) for r in rows if r["train/loss"]] == [0, 1]
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * BATCHES


def test_wandb_keeps_one_run_id_and_the_last_line_uploads_all_its_folders(resumed):
    run, printed = resumed
    folders = sorted(run.glob("wandb/offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run.name}") for f in folders)  # one per process
    (first,), (second,) = (list(f.glob("run-*.wandb")) for f in folders)
    ids = {r.run.run_id for path in (first, second) for r in records(path) if r.WhichOneof("record_type") == "run"}
    assert ids == {run.name}
    resumed_steps = [r["trainer/global_step"] for r in history(second) if "train/loss_step" in r]
    assert resumed_steps == list(range(BATCHES, 2 * BATCHES))  # the resumed process logs from its checkpoint on
    assert f"upload them together, in order, to the one run: wandb sync {folders[0]} {folders[1]}" in printed
