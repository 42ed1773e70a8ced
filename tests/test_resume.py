"""A run killed with SIGKILL and resumed from last.ckpt ends bit-identical to one never stopped."""

import json

import pytest
import torch

COMMON = [
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "seed=7",
    "logger=csv",
    "test=false",
    "data.augment=true",
]  # augmentation: the epoch's random draws must be replayed too


def final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["state_dict"], ckpt["optimizer_states"][0]["state"], ckpt


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(cli, tmp_path):
    straight = cli([*COMMON, f"paths.log_dir={tmp_path / 'a'}"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = cli(
        [
            *COMMON,
            f"paths.log_dir={tmp_path / 'b'}",
            "+callbacks.kill._target_=helpers.KillAt",
            "+callbacks.kill.epoch=2",
            "+callbacks.kill.batch=5",
        ]
    )
    assert killed.returncode == -9  # SIGKILL: nothing could clean up
    (run_b,) = (tmp_path / "b" / "train").iterdir()
    original_config = (run_b / ".hydra" / "config.yaml").read_text()
    resumed = cli([*COMMON, f"paths.log_dir={tmp_path / 'b'}", f"ckpt_path={run_b / 'checkpoints' / 'last.ckpt'}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "b" / "train").iterdir()] == [run_b.name]  # same run, same folder
    assert (run_b / ".hydra" / "config.yaml").read_text() == original_config
    assert len(list((run_b / ".hydra").glob("resume-*/config.yaml"))) == 1

    (run_a,) = (tmp_path / "a" / "train").iterdir()
    weights_a, optim_a, ckpt_a = final_state(run_a)
    weights_b, optim_b, ckpt_b = final_state(run_b)
    assert ckpt_a["global_step"] == ckpt_b["global_step"] and ckpt_a["examples_seen"] == ckpt_b["examples_seen"]
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    for idx in optim_a:
        for key in optim_a[idx]:
            assert torch.equal(torch.as_tensor(optim_a[idx][key]), torch.as_tensor(optim_b[idx][key]))
    metrics_a = json.loads((run_a / "metrics.json").read_text())
    metrics_b = json.loads((run_b / "metrics.json").read_text())
    assert metrics_a["val/acc_best"] == metrics_b["val/acc_best"]
