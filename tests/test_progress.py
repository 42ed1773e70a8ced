"""The progress display: Rich's live bar on a terminal, plain epoch lines in logs, bad settings refused."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TESTS
from optlab.callbacks import EpochLines, RichBar, progress_bar
from optlab.callbacks.progress import _number

SHORT = [
    "trainer.max_epochs=2",
    "logger=none",
    "test=false",
    "trainer.enable_model_summary=false",
    "model.net.widths=[8,16]",
]


@pytest.mark.parametrize("interactive, expected", [("1", RichBar), ("0", EpochLines)])
def test_auto_style_follows_rich_verdict_on_stdout(monkeypatch, interactive, expected):
    monkeypatch.setenv("TTY_INTERACTIVE", interactive)
    assert type(progress_bar()) is expected
    assert type(progress_bar(style="lines")) is EpochLines
    assert type(progress_bar(style="rich")) is RichBar


@pytest.mark.parametrize(
    "override, says",
    [
        ("callbacks.progress_bar.style=fancy", "auto, rich, lines"),
        ("callbacks.progress_bar.every_s=-1", "must be >= 0"),
    ],
)
def test_bad_setting_is_one_line_error(make_cfg, override, says):
    """In-process (the CLI prints a ConfigError as one line, exit 2: tests/test_cli_errors.py)."""
    from optlab.run import _instantiate_all
    from optlab.validate import ConfigError

    with pytest.raises(ConfigError) as error:
        _instantiate_all(make_cfg("logger=none", override))
    said = str(error.value)
    assert "callbacks.progress_bar" in said and says in said and "\n" not in said, said


def test_log_file_gets_one_line_per_epoch_and_mid_epoch_lines_and_no_noise(cli):
    result = cli([*SHORT, "callbacks.progress_bar.every_s=1e-9"])  # stdout is a pipe: style auto -> lines
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert not re.search(r"Epoch \d/1\s+━", out)  # no Rich frame squeezed into the log
    assert "Tip:" not in out + result.stderr and "LeafSpec" not in result.stderr  # third-party noise
    epochs = re.findall(r"^Epoch (\d)/1  (\d+) batches  [\d.]+s  (.*)$", out, re.M)
    assert [e[0] for e in epochs] == ["0", "1"], out
    for _, _, metrics in epochs:
        for name in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"):
            assert re.search(rf"(^|  ){re.escape(name)} [-\d.e]+(  |$)", metrics), metrics
    batches = int(epochs[0][1])
    inside = re.findall(rf"^Epoch [01]/1  (\d+)/{batches} batches ", out, re.M)
    assert sorted(map(int, inside)) == sorted(list(range(1, batches + 1)) * 2)  # every_s ~0: one per batch


def test_default_run_draws_rich_bar_on_a_terminal():
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "120"}
    env.pop("TTY_INTERACTIVE", None)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *SHORT],
        cwd=REPO,
        env=env,
        stdout=slave,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    raw = b"".join(chunks).decode(errors="replace")
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)  # colors, cursor
    assert re.search(r"Epoch 1/1\s+━", out)  # Rich's bar, drawn live
    assert not re.search(r"Epoch \d/1  \d+ batches", out)  # not the log lines
    assert "v_num" not in out
    # What stays on screen: everything outside the live display (cursor hidden ... shown again).
    kept = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", re.sub(r"\x1b\[\?25l.*?\x1b\[\?25h", "", raw, flags=re.S))
    assert len([line for line in kept.splitlines() if line.strip()]) <= 30, kept
    run_dir = Path(re.search(r"run dir: (\S+)", out).group(1))
    log = (run_dir / "train.log").read_text()
    assert not re.search(r"Epoch \d/1\s+━", log) and "\x1b" not in log, "no live frames or colors in the log file"
    assert [m[0] for m in re.findall(r"^Epoch (\d)/1  (\d+) batches", log, re.M)] == ["0", "1"], log


def test_rich_bar_reads_metrics_only_on_logging_steps_and_epoch_ends(make_cfg, monkeypatch):
    from optlab.run import train

    calls = []
    update = RichBar._update_metrics

    def spy(self, trainer, pl_module):
        calls.append(sys._getframe(1).f_code.co_name)
        update(self, trainer, pl_module)

    monkeypatch.setattr(RichBar, "_update_metrics", spy)
    every = 5
    cfg = make_cfg(
        *SHORT,
        "trainer.max_epochs=1",
        "callbacks.progress_bar.style=rich",
        f"trainer.log_every_n_steps={every}",
        "trainer.num_sanity_val_steps=0",
    )
    train(cfg)
    batches = 19  # digits' train split at batch 64
    per_batch = calls.count("on_train_batch_end")
    assert per_batch == batches // every, calls  # Lightning's bar: one per batch
    assert "on_train_epoch_end" in calls and "on_validation_end" in calls


def test_number_format():
    import torch

    assert _number(torch.tensor(0.123456)) == "0.1235"
    assert _number(3) == "3" and _number("v1") == "v1"
