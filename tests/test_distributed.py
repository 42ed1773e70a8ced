"""Two processes on CPU (gloo): every strategy trains, and ranks end with identical weights."""

import pytest
import torch

# Our optimizers under every strategy; under fsdp they step DTensor shards (Muon gathers whole matrices).
RUNS = [("ddp", "adamw"), ("ddp_spawn", "adamw"), ("fsdp", "adamw"), ("fsdp", "muon"), ("fsdp", "sgd"),
        ("ddp", "muon")]


@pytest.mark.slow
@pytest.mark.parametrize("strategy, optimizer", RUNS)
def test_two_process_ranks_agree(cli, tmp_path, strategy, optimizer):
    dump = tmp_path / "weights"
    result = cli([f"strategy={strategy}", "trainer.devices=2", "trainer.max_epochs=2", f"optimizer={optimizer}",
                  "logger=csv", "test=true", f"paths.log_dir={tmp_path / 'logs'}",
                  "+callbacks.dump._target_=helpers.DumpWeights", f"+callbacks.dump.dir={dump}"])
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and rank0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert "test/acc" in result.stdout
