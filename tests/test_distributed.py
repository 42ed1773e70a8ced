"""Two processes on CPU (gloo): every strategy trains, ranks end with identical weights, and the
checkpoints load with weights_only=True (trainer.test reloads the best one that way)."""

import json

import pytest
import torch

from optlab.safe_load import torch_file

# Our optimizers under every strategy; under fsdp they step DTensor shards (Muon gathers whole matrices).
RUNS = [
    ("ddp", "adamw"),
    ("ddp_spawn", "adamw"),
    ("fsdp", "adamw"),
    ("fsdp", "muon"),
    ("fsdp", "sgd"),
    ("ddp", "muon"),
    ("allreduce", "adamw"),
]


TEST_EXAMPLES = 359  # digits: 20% of 1797, rounded down as the data module splits; odd, so 2 shards differ


@pytest.mark.slow
@pytest.mark.parametrize("strategy, optimizer", RUNS)
def test_two_process_ranks_agree(cli, tmp_path, strategy, optimizer):
    dump = tmp_path / "weights"
    result = cli(
        [
            f"strategy={strategy}",
            "trainer.devices=2",
            "trainer.max_epochs=2",
            f"optimizer={optimizer}",
            "logger=csv",
            "test=true",
            f"paths.log_dir={tmp_path / 'logs'}",
            "+callbacks.dump._target_=helpers.DumpWeights",
            f"+callbacks.dump.dir={dump}",
            "+callbacks.count._target_=helpers.CountTested",
            f"+callbacks.count.dir={dump}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and rank0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert "test/acc" in result.stdout
    tested = [int((dump / f"tested-rank{r}.txt").read_text()) for r in (0, 1)]
    if strategy == "fsdp":  # gathers in every forward: equal shards, padded with repeats (Lightning advises so)
        assert tested[0] == tested[1] and "Using `DistributedSampler`" in result.stderr
    else:  # every test example once, as one process would, and the accuracy counts them so
        assert sum(tested) == TEST_EXAMPLES and "Using `DistributedSampler`" not in result.stdout + result.stderr
        (metrics,) = (tmp_path / "logs").rglob("metrics.json")
        correct = json.loads(metrics.read_text())["test/acc"] * TEST_EXAMPLES
        assert correct == pytest.approx(round(correct), abs=1e-3)
    checkpoints = list((tmp_path / "logs").rglob("*.ckpt"))
    assert len(checkpoints) == 2
    for path in checkpoints:
        assert torch_file(path, "ckpt_path")["optimizer_states"]
