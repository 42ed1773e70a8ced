"""ResNet from scratch with a CIFAR-style stem (3x3 conv, stride 1, no max-pool).

blocks=[2,2,2,2], widths=[64,128,256,512] is ResNet-18; blocks=[3,4,6,3] is ResNet-34;
block=bottleneck with [3,4,6,3] is ResNet-50. The defaults in conf/ are a tiny net for 8x8 digits.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet-18/34's residual block: two 3x3 convs; with stride 2 (or a new width) the shortcut is a
    1x1 conv + BN."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50's residual block: 1x1 conv down to `width`, 3x3 (strided), 1x1 up to 4 x `width`."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """`model=resnet_scratch`'s net: stem, then stage i of `blocks[i]` blocks of `widths[i]` (stride 2 at the
    start of every stage but the first), global average pooling and `head`."""

    def __init__(
        self,
        blocks=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        block: str = "basic",
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"model.net.block={block!r}: use one of {sorted(BLOCKS)}")
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(
                f"model.net.blocks {list(blocks)} and widths {list(widths)} need the same, non-zero length"
            )
        block_cls = BLOCKS[block]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages, in_ch = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            for j in range(n):
                stages.append(block_cls(in_ch, width, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = width * block_cls.expansion
        self.blocks = nn.Sequential(*stages)
        self.head = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for b in self.blocks:  # zero-init each branch's last BN: blocks without a projection start as identity
            nn.init.zeros_((b.bn3 if isinstance(b, Bottleneck) else b.bn2).weight)

    def lr_layers(self) -> list[str]:
        """Layers for layer-wise lr decay, input to output: the stem, each residual block, the head."""
        return ["stem", *(f"blocks.{i}" for i in range(len(self.blocks))), "head"]

    def residual_blocks(self) -> list[nn.Module]:
        """The residual blocks: FSDP2 shards (and gathers) them one at a time, activation checkpointing
        recomputes them one at a time."""
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
