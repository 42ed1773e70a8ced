"""model.activation_checkpointing, trainer.channels_last and data.normalize_on_device: the same
training, bit for bit where the math is the same, with less memory or traffic (docs/benchmarks.md)."""

import copy
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from optlab.data.cifar10 import CIFAR10DataModule
from optlab.models.checkpointing import checkpoint_blocks
from optlab.models.pretrained import PretrainedResNet
from optlab.models.resnet import ResNet
from optlab.validate import ConfigError, validate
from test_cifar10 import cifar_cfg, write_cifar10

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # benchmarks/ is imported as a package from the repository root
from benchmarks.memory_options import saved_bytes  # noqa: E402  (the activations autograd keeps, then backward)


def _random_bn(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm scales (ResNet zero-inits the last one of each block)."""
    torch.manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
    return net


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResNet(blocks=[2, 2], widths=[16, 32], block="basic", in_channels=3),
        lambda: ResNet(blocks=[1, 2], widths=[8, 16], block="bottleneck", in_channels=3),
        lambda: PretrainedResNet(arch="resnet18", weights=None, num_classes=10, freeze="none"),
    ],
    ids=["basic", "bottleneck", "torchvision-resnet18"],
)
def test_activation_checkpointing_gives_the_same_gradients_and_statistics_with_less_saved(make):
    plain = _random_bn(make())
    checkpointed = copy.deepcopy(plain)
    assert checkpoint_blocks(checkpointed) == len(plain.residual_blocks())
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()  # checkpoints stay interchangeable
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    plain_bytes, checkpointed_bytes = saved_bytes(plain, x, y), saved_bytes(checkpointed, x, y)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.equal(p.grad, q.grad), name
    # The recomputation runs BatchNorm again in training mode: the running stats must move once.
    for (name, b), c in zip(plain.named_buffers(), checkpointed.buffers()):
        assert torch.equal(b, c), name
    assert checkpointed_bytes < 0.7 * plain_bytes, (checkpointed_bytes, plain_bytes)
    checkpointed.eval()
    with torch.no_grad():  # evaluation does not go through checkpoint at all
        torch.testing.assert_close(checkpointed(x), plain.eval()(x), rtol=0, atol=0)


def test_activation_checkpointing_needs_residual_blocks(make_cfg):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="model.activation_checkpointing=true: Sequential has no residual_blocks"):
        checkpoint_blocks(net)
    with pytest.raises(ConfigError, match=r"model.activation_checkpointing='yes' is invalid: it must be true or false"):
        validate(make_cfg("model.activation_checkpointing=yes"))


def test_channels_last_converts_the_net_and_its_inputs(make_cfg):
    with pytest.raises(ConfigError, match="trainer.channels_last=true: strategy=fsdp .* contiguous parameters only"):
        validate(make_cfg("trainer.channels_last=true", "strategy=fsdp"))  # fully_shard would raise mid-setup
    cfg = make_cfg("trainer.channels_last=true")
    validate(cfg)  # optlab's key, not a Trainer argument: no "not an argument of Trainer"
    from optlab.run import _instantiate_all

    datamodule, model, trainer = _instantiate_all(cfg)
    conv = model.net.blocks[0].conv1.weight  # (the stem's 1-channel conv is both formats at once)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    seen = []
    model.net.stem.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(4, 1, 8, 8)
    loss, _, _ = model._step((x, torch.zeros(4, dtype=torch.long)))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    plain = instantiate(make_cfg().model, optimizer=None)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(loss, plain._step((x, torch.zeros(4, dtype=torch.long)))[0])


def test_digits_normalized_on_the_device_are_the_same_batches(make_cfg):
    batches = {}
    for on_device in (False, True):
        dm = instantiate(make_cfg(f"data.normalize_on_device={str(on_device).lower()}").data)
        dm.setup("fit")
        x, y = next(iter(dm.val_dataloader()))
        batches[on_device] = dm.on_after_batch_transfer((x, y), 0)
    assert torch.equal(batches[False][0], batches[True][0]) and torch.equal(batches[False][1], batches[True][1])


def test_cifar10_normalized_on_the_device_moves_uint8_and_gives_the_same_batches(tmp_path):
    root = tmp_path / "cifar"
    write_cifar10(root)
    batches = {}
    for on_device in (False, True):
        cfg = cifar_cfg(tmp_path, root, "data.verify_md5=false", f"data.normalize_on_device={str(on_device).lower()}")
        dm = instantiate(cfg.data)
        dm.setup("fit")
        x, y = next(iter(dm.test_dataloader()))
        assert x.dtype == (torch.uint8 if on_device else torch.float32)  # what the loader hands over
        batches[on_device] = dm.on_after_batch_transfer((x, y), 0)
    assert torch.equal(batches[False][0], batches[True][0]) and torch.equal(batches[False][1], batches[True][1])


def test_normalize_on_device_is_refused_where_nothing_is_normalized(make_cfg):
    with pytest.raises(InstantiationException, match="data.normalize_on_device=true: SyntheticDataModule does not"):
        instantiate(make_cfg("data=synthetic", "+data.normalize_on_device=true").data)
    assert CIFAR10DataModule.NORMALIZES_ON_DEVICE


def test_training_with_all_three_matches_the_plain_run(make_cfg, tmp_path):
    """Every option on: the same losses as the plain run (a few steps of the default digits run)."""
    from optlab.run import train

    results = []
    for i, extra in enumerate(
        [(), ("model.activation_checkpointing=true", "data.normalize_on_device=true", "trainer.channels_last=true")]
    ):
        cfg = make_cfg(
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=6",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
            "logger=none",
            "trainer.enable_progress_bar=false",
            *extra,
            run_dir=tmp_path / str(i),
        )
        results.append(train(cfg))
    for key in ("train/loss", "val/loss", "test/loss"):
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-5), key
