"""The model summary printed when training starts (`trainer.enable_model_summary`, on by default).

Lightning's lists every attribute of the LightningModule, metric objects and the loss included,
with a FLOPs column of zeros (it counts FLOPs only for a module with an example input). This one
lists the layers that hold parameters, `max_depth` levels into the module (the net's stem, blocks
and head), then the totals on one line: about ten lines for the default ResNet.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from torch import nn


def layer_rows(module: nn.Module, max_depth: int = 2) -> list[tuple[str, str, int, int]]:
    """(name, type, parameters, trainable) of each module with parameters at `max_depth`, or
    shallower where it has no children (a layer of the top module itself)."""
    rows = []
    for name, child in module.named_modules():
        depth = name.count(".") + 1 if name else 0
        is_leaf_above = depth < max_depth and not any(True for _ in child.children())
        if not name or (depth != max_depth and not is_leaf_above):
            continue
        params = list(child.parameters())
        if params:
            trainable = sum(p.numel() for p in params if p.requires_grad)
            rows.append((name, type(child).__name__, sum(p.numel() for p in params), trainable))
    return rows


class LayerSummary(ModelSummary):
    """Lightning adds no summary of its own when the callbacks hold one (this one)."""

    def __init__(self, max_depth: int = 2):
        super().__init__(max_depth=max_depth)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self._max_depth:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column, justify in (("layer", "left"), ("type", "left"), ("params", "right"), ("trainable", "right")):
            table.add_column(column, justify=justify)
        for name, kind, count, trainable in layer_rows(pl_module, self._max_depth):
            shown = "all" if trainable == count else get_human_readable_count(trainable)
            table.add_row(name, kind, get_human_readable_count(count), shown)
        params = list(pl_module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        megabytes = sum(p.numel() * p.element_size() for p in params) / 2**20
        console = Console()
        console.print(table)
        console.print(
            f"{get_human_readable_count(total)} parameters, {get_human_readable_count(trainable)} trainable, "
            f"{megabytes:.2f} MiB"
        )
