"""strategy=allreduce: our data parallelism equals DDP and one process, skips syncs while
accumulating, fails fast on every rank, and rejects bad options before training.

The multi-process runs are `python train.py ...` on CPU (gloo), 2 processes. Classes here are
also used by those runs from the command line (tests/ is on their PYTHONPATH):
`model.net._target_=test_allreduce_strategy.PlainNet`, `+callbacks.x._target_=test_allreduce_strategy.RaiseOnRank`.
"""

import json
import socket
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from torch import nn

# 8 steps of 2 x 32 samples (one epoch: DistributedSampler's shards of one permutation, whose
# union per step is the single process's batch of 64 from the same permutation; epoch 1 would
# reshuffle differently in the two samplers).
DATA = ["data=synthetic", "data.shape=[1,8,8]", "data.num_samples=512", "trainer.max_epochs=1"]
QUIET = [
    "logger=none",
    "test=false",
    "++trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.early_stopping",
]
TOL = 1e-6


class PlainNet(nn.Module):
    """A small conv net without BatchNorm: its gradient for a batch of 2B is the mean of the
    gradients of the two halves, so one process with batch 2B can match two with batch B.
    Accepts (and ignores) the ResNet config's other arguments."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, **_resnet_args):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width, 64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class RaiseOnRank(Callback):
    """Raise on one rank only, at a given training step; the time of raising goes to `stamp`."""

    def __init__(self, rank: int = 1, step: int = 3, stamp: str | None = None):
        self.rank, self.step, self.stamp = rank, step, stamp

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            if self.stamp:
                Path(self.stamp).write_text(repr(time.time()))
            raise RuntimeError(f"deliberate failure on rank {self.rank} at step {trainer.global_step}")


class DumpSyncs(Callback):
    """Each rank writes how many gradient syncs its strategy did, and its optimizer steps."""

    def __init__(self, dir: str):
        self.dir = Path(dir)

    def on_train_end(self, trainer, pl_module) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        info = {
            "syncs": trainer.strategy.gradient_syncs,
            "steps": trainer.global_step,
            "buckets": trainer.strategy.bucket_sizes_mb,
        }
        (self.dir / f"syncs{trainer.global_rank}.json").write_text(json.dumps(info))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def run(cli, tmp_path, name, *overrides, ranks=2, timeout=300):
    dump = tmp_path / name
    args = [
        *DATA,
        *QUIET,
        f"paths.log_dir={tmp_path / 'logs'}",
        "+callbacks.dump._target_=helpers.DumpWeights",
        f"+callbacks.dump.dir={dump}",
        *overrides,
    ]
    result = cli(args, timeout=timeout)
    assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    weights = [torch.load(dump / f"rank{r}.pt") for r in range(ranks)]
    for r in range(1, ranks):
        assert max_diff(weights[0], weights[r]) == 0.0, f"{name}: rank {r} differs from rank 0"
    return weights


# -- equivalence ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer, variants",
    [
        # One optimizer: the strategy only averages gradients and has no optimizer-specific path;
        # AdamW (per-element normalization) shows a difference in them most. (An SGD case cost 75 s
        # of CI's 40 minutes and checked nothing more; so did a third algorithm: tests/test_collectives.py
        # checks ring, tree and naive against dist.all_reduce.)
        ("adamw", [("ring", 25), ("naive", 0.002)]),  # 0.3 MB of gradients: 1 or 7 buckets
    ],
)
def test_same_weights_as_ddp_and_one_process(cli, tmp_path, optimizer, variants):
    two = ["trainer.devices=2", "data.batch_size=32", f"optimizer={optimizer}"]
    # The default ResNet (BatchNorm): == DDP on every rank, buffers included.
    ddp = run(cli, tmp_path, "ddp", "strategy=ddp", *two)
    for algorithm, bucket_mb in variants:
        ours = run(
            cli,
            tmp_path,
            f"allreduce-{algorithm}",
            "strategy=allreduce",
            f"strategy.algorithm={algorithm}",
            f"strategy.bucket_mb={bucket_mb}",
            *two,
        )
        for r in (0, 1):
            diff = max_diff(ours[r], ddp[r])
            print(f"{optimizer} {algorithm} bucket_mb={bucket_mb} rank {r}: max |ours - ddp| = {diff:.3g}")
            assert max_diff(ours[r], ddp[r]) <= TOL, (algorithm, r)
    # Without BatchNorm, 2 processes x 32 == 1 process x 64. In float64: in float32, AdamW turns the
    # different summation order into up to ~1e-5 on an element whose gradient is near 0 (DDP too).
    plain = ["model.net._target_=test_allreduce_strategy.PlainNet", "trainer.precision=64-true"]
    ours = run(cli, tmp_path, "plain-allreduce", "strategy=allreduce", *two, *plain)
    single = run(
        cli,
        tmp_path,
        "plain-single",
        "trainer.devices=1",
        "data.batch_size=64",
        f"optimizer={optimizer}",
        "+callbacks.dump.start=true",
        *plain,
        ranks=1,
    )
    print(f"{optimizer} float64 no-BN net: max |2 processes - 1 process| = {max_diff(ours[0], single[0]):.3g}")
    assert max_diff(ours[0], single[0]) <= TOL
    assert max_diff(single[0], torch.load(tmp_path / "plain-single" / "start-rank0.pt")) > 1e-3  # it trained


@pytest.mark.slow
def test_accumulation_syncs_once_per_step_and_matches_ddp(cli, tmp_path):
    acc = ["trainer.devices=2", "data.batch_size=16", "trainer.accumulate_grad_batches=2", "optimizer=adamw"]
    ddp = run(cli, tmp_path, "ddp", "strategy=ddp", *acc)
    syncs = tmp_path / "syncs"
    ours = run(
        cli,
        tmp_path,
        "ours",
        "strategy=allreduce",
        *acc,
        "+callbacks.syncs._target_=test_allreduce_strategy.DumpSyncs",
        f"+callbacks.syncs.dir={syncs}",
    )
    for r in (0, 1):
        print(f"accumulation rank {r}: max |ours - ddp| = {max_diff(ours[r], ddp[r]):.3g}")
        assert max_diff(ours[r], ddp[r]) <= TOL
        info = json.loads((syncs / f"syncs{r}.json").read_text())
        # 512 samples / 2 ranks / 16 = 16 micro-batches = 8 optimizer steps: 8 syncs, not 16.
        assert info["steps"] == 8 and info["syncs"] == 8, info


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("failing_rank", [1, 0])
def test_one_rank_raising_stops_every_rank(cli, tmp_path, failing_rank):
    stamp = tmp_path / "raised_at"
    result = cli(
        [
            *DATA,
            *QUIET,
            "strategy=allreduce",
            "trainer.devices=2",
            "data.batch_size=16",
            f"paths.log_dir={tmp_path / 'logs'}",
            "+callbacks.boom._target_=test_allreduce_strategy.RaiseOnRank",
            f"+callbacks.boom.rank={failing_rank}",
            "+callbacks.boom.step=3",
            f"+callbacks.boom.stamp={stamp}",
        ],
        timeout=240,
    )
    # cli returns once every rank has exited (they all hold the captured stdout/stderr open)
    after_raise = time.time() - float(stamp.read_text())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert after_raise < 60, after_raise
    assert f"rank {failing_rank} of 2 failed: RuntimeError: deliberate failure on rank {failing_rank}" in output, (
        output[-3000:]
    )


# -- in-process: registry, options ----------------------------------------------------------------


def test_trainer_accepts_the_strategy_name(tmp_path):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    import optlab.distributed  # noqa: F401  (registers "allreduce")
    from optlab.distributed import AllReduceStrategy

    model = BoringModel()
    trainer = L.Trainer(
        strategy="allreduce",
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    assert isinstance(trainer.strategy, AllReduceStrategy) and trainer.strategy.algorithm == "ring"
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model)
    assert trainer.global_step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    tree = L.Trainer(strategy="allreduce_tree", accelerator="cpu", devices=1, logger=False)
    assert tree.strategy.algorithm == "tree"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("algorithm", "foo", "strategy.algorithm='foo' is invalid: it must be naive, tree or ring"),
        ("bucket_mb", 0, "strategy.bucket_mb=0 is invalid: it must be a number of MiB > 0"),
        ("bucket_mb", -1, "strategy.bucket_mb=-1 is invalid"),
        ("backend", "tcp", "strategy.backend='tcp' is invalid"),
        ("start_method", "thread", "strategy.start_method='thread' is invalid"),
    ],
)
def test_bad_options_raise_one_line(option, value, message):
    from optlab.distributed import AllReduceStrategy

    with pytest.raises(ValueError) as info:
        AllReduceStrategy(**{option: value})
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("strategy.algorithm=foo", "strategy.algorithm='foo'"),
        pytest.param("strategy.bucket_mb=0", "strategy.bucket_mb=0", marks=pytest.mark.slow),
    ],
)
def test_bad_options_exit_2_before_training(cli, tmp_path, override, key):
    result = cli(
        ["strategy=allreduce", "trainer.devices=2", override, f"paths.log_dir={tmp_path / 'logs'}", "logger=none"],
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key} is invalid"), result.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


# -- two ranks in-process (torch.multiprocessing): buckets, unused parameters, metric syncs ----------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_rank_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from optlab.distributed.buckets import GradientBuckets, broadcast_tensors
    from optlab.distributed.gather import all_gather_list
    from optlab.distributed.strategy import AllReduceStrategy

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different starting values per rank
        params = [torch.randn(s, requires_grad=True) for s in [(300,), (20, 30), (7,), (5, 5), (1000,)]]
        broadcast_tensors(params)  # rank 0's values everywhere
        # grads: params 0-2 on both ranks, param 3 on rank 0 only, param 4 on no rank
        grads = [torch.full(p.shape, float(rank + 1) * (i + 1)) for i, p in enumerate(params)]
        for i, p in enumerate(params):
            p.grad = grads[i].clone() if i < 3 or (i == 3 and rank == 0) else None
        buckets = GradientBuckets(params, bucket_mb=250 * 4 / 2**20)  # 250 floats: 3 buckets
        buckets.sync()
        result = {
            "values": [p.detach().tolist() for p in params],
            "grads": [None if p.grad is None else p.grad.tolist() for p in params],
            "n_buckets": len(buckets.buckets),
            "views": [
                p.grad is not None and any(p.grad.data_ptr() == v.data_ptr() for vs in buckets.views for v in vs)
                for p in params
            ],
        }
        # zero_grad(set_to_none=False): the grads stay bucket views, backward accumulates into them
        for p in params[:3]:
            p.grad.zero_()
        (sum((p * (rank + 1)).sum() for p in params[:3])).backward()
        buckets.sync()
        result["second"] = [p.grad.flatten()[:3].tolist() for p in params[:3]]
        # backward into the buckets (prepare), with and without overlap: the same averaged gradients
        grads = {}
        for overlap in (False, True):
            torch.manual_seed(0)
            net = nn.Sequential(
                nn.Linear(3, 3),  # never used
                nn.Linear(8, 64),
                nn.ReLU(),
                nn.Linear(64, 64),
                nn.ReLU(),
                nn.Linear(64, 4),
            )
            params = list(net.parameters())[::-1]  # backward order, as the strategy sorts them
            b = GradientBuckets(params, bucket_mb=200 * 4 / 2**20, overlap=overlap)  # 4 buckets
            torch.manual_seed(10 + rank)
            for _step in range(3):
                for p in params:
                    p.grad = None
                b.prepare()
                net[1:](torch.randn(16, 8)).pow(2).mean().backward()
                b.sync()
            grads[overlap] = [None if p.grad is None else p.grad.clone() for p in params]
            result[f"overlap{overlap}_buckets"] = len(b.buckets)
            result[f"overlap{overlap}_unused_none"] = params[-1].grad is None and params[-2].grad is None
            result[f"overlap{overlap}_early"] = b.early_sends
            b.close()
        result["overlap_equal"] = all(
            (x is None and y is None) or torch.equal(x, y) for x, y in zip(grads[False], grads[True])
        )
        result["overlap_grad"] = grads[True][0].flatten()[:4].tolist()
        strategy = AllReduceStrategy(parallel_devices=[torch.device("cpu")])
        result["mean"] = strategy.reduce(torch.tensor(float(rank)), reduce_op="mean").item()
        result["sum_int"] = strategy.reduce(torch.tensor(rank + 1), reduce_op="sum").item()
        result["max"] = strategy.reduce(torch.tensor([rank, -rank]), reduce_op="max").tolist()
        result["gather"] = [t.tolist() for t in all_gather_list(torch.arange(rank + 2))]
        result["object"] = strategy.broadcast({"rank": rank, "path": "x" * 1000} if rank == 0 else None)["rank"]
        strategy.barrier()
        Path(out, f"{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_buckets_and_collectives_on_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_two_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    assert r0["values"] == r1["values"]  # broadcast_tensors
    assert r0["grads"] == r1["grads"] and r0["n_buckets"] == 3
    sizes = [(300,), (20, 30), (7,), (5, 5)]
    for i in range(3):  # (1 + 2) / 2 * (i + 1)
        assert torch.allclose(torch.tensor(r0["grads"][i]), torch.full(sizes[i], 1.5 * (i + 1)))
    assert torch.allclose(torch.tensor(r0["grads"][3]), torch.full((5, 5), 2.0))  # (4 + 0) / 2: rank 1 had none
    assert r0["grads"][4] is None  # used by no rank: stays None on both
    assert r0["views"] == [True, True, True, True, False]
    assert r0["second"] == r1["second"] == [[1.5] * 3] * 3  # d/dp of (rank+1)*p, averaged
    assert r0["mean"] == 0.5 and r0["sum_int"] == 3 and r0["max"] == [1, 0]
    assert r0["gather"] == r1["gather"] == [[0, 1], [0, 1, 2]]
    assert r0["object"] == r1["object"] == 0
    assert r0["overlapTrue_buckets"] == 4 and r0["overlapTrue_unused_none"] and r1["overlapTrue_unused_none"]
    assert r0["overlapTrue_early"] == r1["overlapTrue_early"] == 3 * 3  # buckets 0-2 of 4 left during backward
    assert r0["overlap_equal"] and r1["overlap_equal"] and r0["overlap_grad"] == r1["overlap_grad"]


def test_gradient_views_keep_a_channels_last_params_layout():
    """Bucket views follow each param's memory layout, as DDP's do: a channels_last weight gets a
    channels_last gradient (else autograd warns that the layout contract is broken and copies)."""
    from optlab.distributed.buckets import _views

    conv = torch.empty(8, 4, 3, 3).to(memory_format=torch.channels_last)
    bias, gappy = torch.empty(8), torch.empty(4, 6)[:, ::2]  # the last one has gaps: a plain view
    flat = torch.arange(float(conv.numel() + bias.numel() + gappy.numel()))
    v_conv, v_bias, v_gappy = _views(flat, [conv, bias, gappy])
    assert v_conv.stride() == conv.stride() and v_conv.is_contiguous(memory_format=torch.channels_last)
    assert v_conv.data_ptr() == flat.data_ptr() and sorted(v_conv.flatten().tolist()) == list(range(conv.numel()))
    assert v_bias.data_ptr() == flat[conv.numel() :].data_ptr() and v_bias.is_contiguous()
    assert v_gappy.shape == gappy.shape and v_gappy.is_contiguous()
    assert v_gappy.data_ptr() == flat[conv.numel() + 8 :].data_ptr()
