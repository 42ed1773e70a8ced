"""The LightningModule: any image network + cross-entropy, accuracy, and the optimizer factory.

Metric names follow `<stage>/<metric>`: train/loss_step (the batch's loss, on logging steps),
train/loss and train/acc (epoch means), val/loss, val/acc, val/acc_best, test/loss, test/acc.
`examples_seen` (all ranks together) is logged too: it is the fair x-axis when runs with
different batch sizes or device counts are compared.

Training metrics are running sums on the device, logged only on the steps Lightning writes to the
loggers: per-step torchmetrics updates and `self.log` calls cost as much as a step of the default
network (docs/benchmarks.md). Validation and test keep torchmetrics (synced across ranks).
"""

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from optlab.loggers.steps import logs_this_step
from optlab.models.checkpointing import checkpoint_blocks
from optlab.models.init import initialize
from optlab.optim import build_optimizer


class ImageClassifier(L.LightningModule):
    """`model=resnet_scratch` / `model=resnet_finetune` (`net` is the network): `optimizer` and `scheduler` are
    partial constructors (the `optimizer` / `scheduler` groups) built in configure_optimizers over the strategy's
    model, with `param_groups` as options to optlab.optim.build_optimizer. `init`: how the net's
    conv/linear weights start (optlab.models.init). `activation_checkpointing`: recompute each residual block in
    the backward pass (optlab.models.checkpointing). `channels_last`: the net and its inputs in NHWC memory
    format (set from `trainer.channels_last`)."""

    # Set several times per step (Lightning sets _current_fx_name around each of ~20 hook calls), and
    # never a parameter, module or buffer: skip nn.Module.__setattr__'s checks for those (2 us each).
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "examples_seen", "_train_sums", "_train_count"})

    def __setattr__(self, name: str, value) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        param_groups: dict | None = None,
        label_smoothing: float = 0.0,
        compile: bool = False,
        init: str = "default",
        activation_checkpointing: bool = False,
        channels_last: bool = False,
    ):
        super().__init__()
        if init != "default" and getattr(net, "pretrained", False):
            raise ValueError(
                f"model.init={init} would overwrite the pretrained weights; use it with model=resnet_scratch "
                "(or model.net.weights=null)"
            )
        initialize(net, init)
        if activation_checkpointing:
            checkpoint_blocks(net)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        # Plain values only: checkpoints then load with torch's weights_only=True. The net, optimizer
        # and scheduler are rebuilt from the config (saved next to the checkpoint in .hydra/).
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.param_group_options = dict(param_groups or {})
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        num_classes = net.head.out_features
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self._train_sums, self._train_count = None, 0  # (loss sum, correct) on the device, samples
        self.val_acc_best = MaxMetric()
        self.examples_seen = 0
        self._resumed_best: float | None = None
        self._configured = False

    def configure_model(self) -> None:
        """Shard for FSDP2 and compile; runs once, on the right device, before the optimizer is made."""
        if self._configured:
            return
        self._configured = True
        mesh = self.device_mesh  # set by ModelParallelStrategy (strategy=fsdp) only
        if mesh is not None:
            from torch.distributed.fsdp import fully_shard

            dp_mesh = mesh["data_parallel"]
            for unit in getattr(self.net, "residual_blocks", list)():
                fully_shard(unit, mesh=dp_mesh)
            fully_shard(self.net, mesh=dp_mesh)
        if self.hparams.compile:
            self.net.compile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _average_buffers(self) -> None:
        """FSDP2 leaves buffers (BatchNorm running stats) to drift apart per rank, where DDP
        broadcasts rank 0's; average them so every rank evaluates and saves the same model."""
        if self.device_mesh is None:
            return
        import torch.distributed as dist

        group = self.device_mesh["data_parallel"].get_group()
        for buffer in self.net.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
                buffer.div_(dist.get_world_size(group))

    def on_validation_epoch_start(self) -> None:
        self._average_buffers()

    def on_train_end(self) -> None:
        self._average_buffers()

    def _step(self, batch):
        x, y = batch
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self(x)
        return self.criterion(logits, y), logits.argmax(dim=1), y

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # the sanity check must not count as a best
        if self._resumed_best is not None:
            self.val_acc_best.update(torch.tensor(self._resumed_best))

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_count = None, 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        self.examples_seen += len(y) * self.trainer.world_size
        # Sums stay on the device (no host sync per step); a resumed epoch counts from the resume.
        sums = torch.stack([loss.detach().float() * len(y), (preds == y).sum().float()])
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        self._train_count += len(y)
        if logs_this_step(self.trainer):
            self.log("train/loss_step", loss.detach(), prog_bar=True)
            self.log("examples_seen", float(self.examples_seen), reduce_fx="max")
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_sums is None:
            return
        loss_mean, acc = self._train_sums / self._train_count
        # Every rank sees the same number of samples (DistributedSampler pads), so the mean over
        # ranks of the per-rank means is the global mean.
        self.log_dict({"train/loss": loss_mean, "train/acc": acc}, sync_dist=True, prog_bar=True)
        # Already global (every rank counts all ranks); the max over ranks says so to Lightning, which
        # otherwise advises sync_dist on every epoch of a multi-process run.
        self.log("examples_seen", float(self.examples_seen), reduce_fx="max", sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.val_loss(loss, weight=len(y))  # the mean over examples, the last short batch included
        self.val_acc(preds, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_loss(loss, weight=len(y))
        self.test_acc(preds, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        # self.trainer.model, not self: under FSDP/DDP these are the parameters the strategy made.
        optimizer = build_optimizer(self.trainer.model, self.optimizer_factory, **self.param_group_options)
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["examples_seen"] = self.examples_seen
        checkpoint["val_acc_best"] = float(self.val_acc_best.compute()) if self.val_acc_best.update_called else None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.examples_seen = checkpoint.get("examples_seen", 0)
        self._resumed_best = checkpoint.get("val_acc_best")
