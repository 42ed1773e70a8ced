"""The training samplers: epoch order and augmentation draws depend only on (seed, epoch[, rank])."""

import torch
from torch.utils.data import DistributedSampler

from optlab.data.sampling import EpochSeededDistributedSampler, EpochSeededSampler, UnpaddedShardSampler, eval_sampler

DATA = list(range(50))


def draw_after_iter(sampler) -> tuple[list[int], float]:
    order = list(sampler)
    return order, torch.rand(()).item()  # what an augmentation would draw first this epoch


def test_single_process_epochs_repeat_and_differ():
    a, b = EpochSeededSampler(DATA, seed=3), EpochSeededSampler(DATA, seed=3)
    torch.manual_seed(123)  # whatever the global state was before: the epoch overrides it
    first = draw_after_iter(a)
    assert sorted(first[0]) == DATA
    a.set_epoch(1)
    second = draw_after_iter(a)
    b.set_epoch(1)
    torch.manual_seed(999)
    assert draw_after_iter(b) == second  # a "resumed" sampler at epoch 1 repeats epoch 1 exactly
    assert second[0] != first[0] and second[1] != first[1]


def test_distributed_shards_like_ddp_and_reseeds_per_rank():
    seen = []
    for rank in (0, 1):
        ours = EpochSeededDistributedSampler(DATA, num_replicas=2, rank=rank, seed=5)
        ref = DistributedSampler(DATA, num_replicas=2, rank=rank, seed=5)
        for epoch in (0, 1):
            ours.set_epoch(epoch), ref.set_epoch(epoch)
            order, draw = draw_after_iter(ours)
            assert order == list(ref)  # the same shard DDP's own sampler would give
            torch.manual_seed(0)
            assert draw_after_iter(ours)[1] == draw  # repeats after any global state (resume)
            seen.append(draw)
    assert len(set(seen)) == 4  # every (rank, epoch) augments differently


def test_evaluation_shards_hold_every_example_once():
    shards = [list(UnpaddedShardSampler(list(range(51)), num_replicas=2, rank=rank)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(51)) and [len(s) for s in shards] == [26, 25]
    assert len(UnpaddedShardSampler(list(range(51)), num_replicas=2, rank=1)) == 25


def fake_strategy(cls, world_size: int, global_rank: int = 1):
    """An instance of cls as eval_sampler sees it (its world and rank), without setting one up."""
    return object.__new__(type("Fake", (cls,), {"world_size": world_size, "global_rank": global_rank}))


def test_uneven_evaluation_shards_only_where_ranks_may_run_a_batch_fewer():
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy, SingleDeviceStrategy

    from optlab.distributed.strategy import AllReduceStrategy

    data = list(range(9))
    for cls in (DDPStrategy, AllReduceStrategy):
        assert list(eval_sampler(data, fake_strategy(cls, 2))) == [1, 3, 5, 7]
        assert eval_sampler(data[:1], fake_strategy(cls, 2)) is None  # a rank without a batch: padded
    # FSDP gathers in every forward (Lightning pads); one process needs no sampler
    for strategy in (fake_strategy(ModelParallelStrategy, 2), fake_strategy(SingleDeviceStrategy, 1, 0), None):
        assert eval_sampler(data, strategy) is None
