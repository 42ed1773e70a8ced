"""Data parallelism on our own collectives: `strategy=allreduce` (or `Trainer(strategy="allreduce")`).

Every rank holds the whole model and its own shard of the data; after backward the gradients are
averaged over the ranks with `optlab.distributed.all_reduce` (send/recv only), so every rank takes
the same optimizer step. What it does, and where:

- Launch: as Lightning's DDPStrategy: `start_method=popen` re-runs the command line once per extra
  device (like torchrun), `spawn`/`fork`/`forkserver` use torch.multiprocessing; processes that
  torchrun or SLURM already started are used as they are (the cluster environment says so).
  Process group: gloo on CPU, nccl on GPU (`backend` overrides), with `timeout` seconds for a peer
  that is alive but silent.
- Start: after the model is on its device, rank 0's parameters and buffers are broadcast (ours,
  packed into one flat tensor per dtype), for fit, validate, test and predict alike.
- Gradient sync: `optimizer_step` wraps Lightning's closure (training_step + zero_grad + backward),
  so the sync runs right after backward and before `on_before_optimizer_step`, gradient clipping
  and `optimizer.step`: clipping and the optimizer see the averaged gradient, as under DDP.
  Gradient accumulation needs no special case: on non-final micro-batches Lightning runs the
  closure without an optimizer step (inside `block_backward_sync`), so nothing is sent; the
  gradients summed locally over the micro-batches are averaged once, at the step.
  The same holds for manual optimization: the sync runs at `opt.step()`, for that optimizer's
  parameters only.
- Buckets, overlap, unused parameters: each optimizer's gradients are averaged in flat buckets of
  about `bucket_mb` MiB, one `all_reduce(op="mean")` each, that backward accumulates into
  directly; `overlap=true` sends full buckets from a thread while backward continues; a
  parameter no rank used keeps grad None. How: optlab.distributed.buckets (its docstring).
- Buffers (BatchNorm running stats): as DDP with broadcast_buffers=True, rank 0's buffers are
  broadcast before a forward pass whenever the previous forward was a synced training forward
  (the first one, every training step, and the first validation batch after training); not after
  an accumulation micro-batch or an evaluation batch. Every rank therefore evaluates and saves
  rank 0's statistics, and weights and buffers equal DDP's.
- Metrics: `self.log(..., sync_dist=True)` reaches `reduce`: ours (mean/sum; max/min through a
  gather). torchmetrics objects in the module (val/test accuracy and loss counts) get
  `dist_sync_fn` = a gather built from our all_reduce (optlab.distributed.gather: each rank fills
  its own row of a zero tensor; the sum is every rank's value, exactly). `reduce_boolean_decision` (early stopping,
  checkpointing) and `barrier` are our all_reduce; Lightning's object broadcasts (log dir,
  checkpoint paths) pickle to a byte tensor sent with our broadcast. Left to torch.distributed:
  `all_gather(sync_grads=True)` (needs autograd through the gather) and SyncBatchNorm.
- Faults: when a rank raises, `on_exception` prints `error: rank k of N failed: <cause>` on stderr
  before Lightning tears down and the process exits non-zero; peers blocked in send/recv to it
  then get a connection error (gloo notices the closed socket) and exit too, and Lightning's
  subprocess launcher SIGKILLs the whole group within 5 s of a child's exit. A rank that hangs
  without exiting is caught by the process-group `timeout`.
- World size 1: nothing is sent (no buckets are built); data loaders are left as with one device.

To run: `python train.py strategy=allreduce trainer.devices=2` (`strategy.algorithm=tree`,
`strategy.bucket_mb=4`); measured against DDP in docs/distributed.md (benchmarks/strategy_step.py).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.utilities.distributed import (
    _all_gather_ddp_if_available,
    _distributed_is_initialized,
    _get_default_process_group_backend_for_device,
    _init_dist_connection,
)
from lightning.fabric.utilities.optimizer import _optimizers_to_device
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import ParallelStrategy, StrategyRegistry
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from torch import Tensor

from optlab.distributed.buckets import GradientBuckets, _BufferBroadcaster, broadcast_tensors
from optlab.distributed.collectives import ALGORITHMS, all_reduce, broadcast
from optlab.distributed.gather import all_gather_list

START_METHODS = ("popen", "spawn", "fork", "forkserver")
BACKENDS = ("gloo", "nccl", "mpi")


def check_options(algorithm="ring", bucket_mb=25, backend=None, start_method="popen", timeout=1800) -> None:
    """One-line ValueError for a bad option (the CLI turns it into `error: ...`, exit 2)."""

    def bad(key, value, must):
        raise ValueError(f"strategy.{key}={value!r} is invalid: it must be {must} (set it with `strategy.{key}=...`)")

    if algorithm not in ALGORITHMS:
        bad("algorithm", algorithm, f"{', '.join(ALGORITHMS[:-1])} or {ALGORITHMS[-1]}")
    if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or not bucket_mb > 0:
        bad("bucket_mb", bucket_mb, "a number of MiB > 0")
    if backend is not None and backend not in BACKENDS:
        bad("backend", backend, "null (gloo on CPU, nccl on GPU), gloo, nccl or mpi")
    if start_method not in START_METHODS:
        bad("start_method", start_method, "popen, spawn, fork or forkserver")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        bad("timeout", timeout, "a number of seconds > 0")


def _op_name(reduce_op) -> str:
    """Lightning's reduce_op (None, "mean", ReduceOp.SUM, ...) as the op name our all_reduce takes."""
    if reduce_op is None:
        return "sum"  # what torch.distributed.all_reduce does with no op
    name = str(getattr(reduce_op, "name", reduce_op)).lower()
    name = name.rsplit(".", 1)[-1]  # "ReduceOp.SUM" -> "sum"
    return {"avg": "mean", "mean": "mean", "sum": "sum", "max": "max", "min": "min"}.get(name, name)


# -- the strategy ------------------------------------------------------------------------------


class AllReduceStrategy(ParallelStrategy):
    """Data parallel with gradients averaged by optlab's all_reduce (see the module docstring)."""

    strategy_name = "allreduce"

    def __init__(
        self,
        algorithm: str = "ring",
        bucket_mb: float = 25,
        backend: str | None = None,
        start_method: str = "popen",
        timeout: float | timedelta = 1800,
        gradient_as_bucket_view: bool = True,
        overlap: bool = False,
        broadcast_buffers: bool = True,
        accelerator=None,
        parallel_devices=None,
        cluster_environment=None,
        checkpoint_io=None,
        precision_plugin=None,
    ):
        check_options(algorithm, bucket_mb, backend, start_method, timeout)
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
        )
        self.algorithm, self.bucket_mb = algorithm, float(bucket_mb)
        self._process_group_backend = backend
        self._start_method = start_method
        self._timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.gradient_as_bucket_view, self.overlap = gradient_as_bucket_view, overlap
        self.broadcast_buffers = broadcast_buffers
        self._num_nodes = 1
        self._buckets: dict[int, GradientBuckets] = {}  # id(optimizer) -> its gradient buckets
        self._buffers: _BufferBroadcaster | None = None
        self._no_sync = False  # inside block_backward_sync: an accumulation micro-batch
        self._sync_buffers_next = True  # DDP's require_forward_param_sync

    @staticmethod
    def check_config(node) -> None:
        """For optlab.validate: the option values of a `strategy` config node, before any process starts."""
        from optlab.validate import ConfigError

        keys = ("algorithm", "bucket_mb", "backend", "start_method", "timeout")
        try:
            check_options(**{k: node[k] for k in keys if k in node})
        except ValueError as e:
            raise ConfigError(str(e)) from None

    # ---- devices, ranks, launch, process group (as DDPStrategy) ----

    @property
    def root_device(self) -> torch.device:
        assert self.parallel_devices is not None
        return self.parallel_devices[self.local_rank]

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @num_nodes.setter
    def num_nodes(self, num_nodes: int) -> None:
        self._num_nodes = num_nodes

    @property
    def num_processes(self) -> int:
        return len(self.parallel_devices) if self.parallel_devices is not None else 0

    @property
    def is_distributed(self) -> bool:
        """Lightning puts a DistributedSampler into val/test loaders when True (one device: no)."""
        return self.num_nodes * self.num_processes > 1

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {"num_replicas": self.num_nodes * self.num_processes, "rank": self.global_rank}

    @property
    def process_group_backend(self) -> str | None:
        return self._process_group_backend

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        if self._start_method == "popen":
            self._launcher = _SubprocessScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
        else:
            self._launcher = _MultiProcessingLauncher(self, start_method=self._start_method)

    def set_world_ranks(self) -> None:
        if self.cluster_environment is not None:
            self.cluster_environment.set_global_rank(self.node_rank * self.num_processes + self.local_rank)
            self.cluster_environment.set_world_size(self.num_nodes * self.num_processes)
        rank_zero_only.rank = utils_rank_zero_only.rank = self.global_rank

    def setup_environment(self) -> None:
        super().setup_environment()
        reset_seed()
        self.set_world_ranks()
        if self._process_group_backend is None:
            self._process_group_backend = _get_default_process_group_backend_for_device(self.root_device)
        kwargs: dict[str, Any] = {"timeout": self._timeout}
        if self.root_device.type != "cpu":
            kwargs["device_id"] = self.root_device
        _init_dist_connection(self.cluster_environment, self._process_group_backend, **kwargs)

    def _communicating(self) -> bool:
        return _distributed_is_initialized() and dist.get_world_size() > 1

    # ---- model, optimizers ----

    def model_to_device(self) -> None:
        assert self.model is not None
        self.model.to(self.root_device)

    def setup(self, trainer) -> None:
        assert self.accelerator is not None and self.model is not None
        self.accelerator.setup(trainer)
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and self._layer_sync:
            self.model = self._layer_sync.apply(self.model)
        self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        communicating = self._communicating()
        if communicating:
            broadcast_tensors(list(self.model.parameters()) + list(self.model.buffers()), src=0)
            self._route_metric_syncs()
        if fitting:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()
        if fitting:
            _optimizers_to_device(self.optimizers, self.root_device)
        self._close_buckets()
        self._buffers = None
        if communicating and fitting:
            self._build_buckets()
            if self.broadcast_buffers and any(True for _ in self.model.buffers()):
                self._buffers = _BufferBroadcaster(self.model)
        self._sync_buffers_next = True

    def _build_buckets(self) -> None:
        order = {id(p): i for i, p in enumerate(self.model.parameters())}
        for optimizer in self.optimizers:
            seen, params = set(), []
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
            # backward produces the last layers' gradients first: fill (and later overlap) in that order
            params.sort(key=lambda p: -order.get(id(p), -1))
            if params:
                self._buckets[id(optimizer)] = GradientBuckets(
                    params,
                    self.bucket_mb,
                    self.algorithm,
                    as_bucket_view=self.gradient_as_bucket_view,
                    overlap=self.overlap,
                )

    def _close_buckets(self) -> None:
        for buckets in self._buckets.values():
            buckets.close()
        self._buckets = {}

    def _route_metric_syncs(self) -> None:
        try:
            from torchmetrics import Metric
        except ImportError:
            return
        for module in self.lightning_module.modules():
            if isinstance(module, Metric) and module.dist_sync_fn is None:
                module.dist_sync_fn = partial(all_gather_list, algorithm=self.algorithm)

    @property
    def gradient_syncs(self) -> int:
        """Gradient all-reduces done so far, over all optimizers (one per optimizer step)."""
        return sum(b.syncs for b in self._buckets.values())

    @property
    def bucket_sizes_mb(self) -> list[float]:
        return [s for b in self._buckets.values() for s in b.sizes_mb]

    @property
    def early_sends(self) -> int:
        return sum(b.early_sends for b in self._buckets.values())

    # ---- the training step: buffers before forward, gradients after backward ----

    def _forward(self, step: Callable, *args, **kwargs):
        if self._buffers is not None and self._sync_buffers_next:
            self._buffers(self.global_rank)
        out = step(*args, **kwargs)
        self._sync_buffers_next = torch.is_grad_enabled() and not self._no_sync
        return out

    def training_step(self, *args, **kwargs):
        return self._forward(super().training_step, *args, **kwargs)

    def validation_step(self, *args, **kwargs):
        return self._forward(super().validation_step, *args, **kwargs)

    def test_step(self, *args, **kwargs):
        return self._forward(super().test_step, *args, **kwargs)

    def predict_step(self, *args, **kwargs):
        return self._forward(super().predict_step, *args, **kwargs)

    @contextmanager
    def block_backward_sync(self):
        """Lightning runs non-final accumulation micro-batches in here (no optimizer step follows)."""
        self._no_sync = True
        try:
            yield None
        finally:
            self._no_sync = False

    def _buckets_of(self, optimizer) -> GradientBuckets | None:
        return self._buckets.get(id(getattr(optimizer, "_optimizer", optimizer)))

    def backward(self, closure_loss: Tensor, optimizer, *args, **kwargs) -> Tensor:
        """Missing gradients become bucket views first, so backward accumulates into the buckets."""
        if self._buckets:
            automatic = self.lightning_module is not None and self.lightning_module.automatic_optimization
            own = self._buckets_of(optimizer) if optimizer is not None else None
            for buckets in [own] if own is not None else self._buckets.values():
                # early sends (overlap) only when this backward is the last one before the step
                buckets.prepare(syncing=automatic and own is not None and not self._no_sync)
        return super().backward(closure_loss, optimizer, *args, **kwargs)

    def optimizer_step(self, optimizer, closure: Callable[[], Any], model=None, **kwargs) -> Any:
        buckets = self._buckets_of(optimizer)
        if buckets is None:
            return super().optimizer_step(optimizer, closure, model, **kwargs)

        def closure_then_sync():
            result = closure()  # training_step, zero_grad, backward
            buckets.sync()  # before on_before_optimizer_step, clipping and the step
            return result

        return super().optimizer_step(optimizer, closure_then_sync, model, **kwargs)

    # ---- collectives Lightning asks the strategy for ----

    def reduce(self, tensor, group=None, reduce_op="mean"):
        """The `self.log(..., sync_dist=True)` path (and reduce_boolean_decision): ours."""
        if not isinstance(tensor, Tensor) or not _distributed_is_initialized() or dist.get_world_size(group) == 1:
            return tensor
        op = _op_name(reduce_op)
        if op in ("max", "min"):
            stacked = torch.stack(all_gather_list(tensor, group=group, algorithm=self.algorithm))
            return stacked.amax(0) if op == "max" else stacked.amin(0)
        if op not in ("sum", "mean"):
            raise ValueError(f"AllReduceStrategy.reduce supports mean, sum, max and min, not {reduce_op!r}")
        work = tensor.detach().clone()
        if op == "mean" and not work.is_floating_point():
            work = work.double()
        all_reduce(work, op=op, algorithm=self.algorithm, group=group)
        return work.to(tensor.dtype)

    def all_gather(self, tensor: Tensor, group=None, sync_grads: bool = False) -> Tensor:
        if not _distributed_is_initialized() or dist.get_world_size(group) == 1:
            return tensor.unsqueeze(0) if isinstance(tensor, Tensor) else tensor
        if sync_grads:  # a differentiable gather: torch's
            return _all_gather_ddp_if_available(tensor, group=group, sync_grads=True)
        return torch.stack(all_gather_list(tensor, group=group, algorithm=self.algorithm))

    def barrier(self, *args, **kwargs) -> None:
        """An all_reduce: no rank finishes it before every rank has started it."""
        if not _distributed_is_initialized():
            return
        n = dist.get_world_size()
        if n > 1:
            all_reduce(torch.zeros(n, device=self.root_device), op="sum", algorithm=self.algorithm)

    def broadcast(self, obj, src: int = 0):
        """Any picklable object: its bytes go through our broadcast (length first)."""
        if not _distributed_is_initialized() or dist.get_world_size() == 1:
            return obj
        device = self.root_device
        if dist.get_rank() == src:
            data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device)
            size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
        else:
            size = torch.zeros(1, dtype=torch.int64, device=device)
        broadcast(size, src=src)
        if dist.get_rank() != src:
            data = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
        broadcast(data, src=src)
        return obj if dist.get_rank() == src else pickle.loads(data.cpu().numpy().tobytes())

    # ---- faults, teardown ----

    def on_exception(self, exception: BaseException) -> None:
        """Name the rank and the cause before Lightning tears down (the traceback follows)."""
        if isinstance(exception, KeyboardInterrupt):
            return
        cause = " ".join(str(exception).split()) or "(no message)"
        if len(cause) > 500:
            cause = cause[:500] + " ..."
        hint = ""
        lowered = cause.lower()
        if any(w in lowered for w in ("connection", "peer", "gloo", "nccl", "timed out", "timeout")):
            hint = " (a communication failure: another rank may have failed first; see its error)"
        rank = self.global_rank if self.cluster_environment is not None else 0
        print(
            f"error: rank {rank} of {self.world_size} failed: {type(exception).__name__}: {cause}{hint}",
            file=sys.stderr,
            flush=True,
        )

    def teardown(self) -> None:
        if (
            self.lightning_module is not None
            and self._layer_sync
            and self.lightning_module._trainer is not None
            and self.lightning_module._trainer.state.fn == TrainerFn.FITTING
        ):
            self.model = self._layer_sync.revert(self.model)
        self._close_buckets()
        self._buffers = None
        # The process group stays up, as under DDP: trainer.test() after fit reuses it.
        super().teardown()

    @classmethod
    def register_strategies(cls, strategy_registry) -> None:
        if "allreduce" not in strategy_registry:
            strategy_registry.register(
                "allreduce",
                cls,
                description="Data parallel on optlab's own all_reduce (send/recv; ring, tree or naive)",
            )
        for algorithm in ALGORITHMS:
            name = f"allreduce_{algorithm}"
            if name not in strategy_registry:
                strategy_registry.register(
                    name, cls, description=f"allreduce with algorithm={algorithm}", algorithm=algorithm
                )


AllReduceStrategy.register_strategies(StrategyRegistry)
