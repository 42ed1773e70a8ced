"""Pretrained ResNets offline: ImageNet weights from the torch.hub cache, local files, template
checkpoints; frozen vs finetuned backbones; the feature-extraction experiment end to end.

No test downloads anything: "ImageNet" weights are random tensors saved where torch.hub caches
the real file, and the download a missing cache would start is replaced by one that fails.
"""

import re
import urllib.error
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torchvision import models

from optlab.models import PretrainedResNet
from optlab.optim import SGD, build_optimizer
from optlab.run import compose_config, train
from optlab.validate import ConfigError, instantiable, validate
from test_cifar10 import write_cifar10

WEIGHT_ENUMS = {"resnet18": models.ResNet18_Weights, "resnet34": models.ResNet34_Weights}


def fake_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision state_dict whose BatchNorm buffers differ from a fresh net's too (mean 0, var 1)."""
    torch.manual_seed(seed)
    state = getattr(models, arch)(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = torch.randn_like(value)
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty $TORCH_HOME; returns its hub/checkpoints folder (where torch.hub caches weights)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


@pytest.fixture
def offline(monkeypatch):
    """torch.hub's download fails the way it does without network; yields the URLs it was asked for."""
    asked = []

    def no_network(url, dst, *args, **kwargs):
        asked.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known (test: offline)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return asked


def cache_imagenet(checkpoints: Path, arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    state = fake_state(arch, seed)
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoints / Path(WEIGHT_ENUMS[arch].IMAGENET1K_V1.url).name)
    return state


def assert_backbone_equals(net: PretrainedResNet, state: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor (parameters and BatchNorm buffers) is the one in `state`."""
    own = net.backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert set(own) == set(expected)
    for key, value in expected.items():
        assert torch.equal(own[key], value), key


def backbone_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def synthetic_cfg(tmp_path, weights, *overrides, run="run"):
    return compose_config(
        [
            "data=synthetic",
            "data.shape=[3,32,32]",
            "data.num_samples=16",
            "data.batch_size=8",
            "model=resnet_finetune",
            "model.net.arch=resnet18",
            f"model.net.weights={weights}",
            "logger=none",
            "test=false",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            *overrides,
        ],
        run_dir=tmp_path / run,
    )


def fit_in_process(cfg):
    """The run's datamodule, module and trainer config, fitted here so the test sees the module."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=scheduler, _convert_="all")
    before = backbone_snapshot(model.net)
    trainer = instantiate(
        instantiable(cfg.trainer, "trainer"),  # without optlab's own keys (trainer.channels_last)
        strategy=instantiate(cfg.strategy),
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return model, trainer, before


def check_param_groups(model, optimizer, lr: float, weight_decay: float, backbone_scale: float) -> None:
    """backbone.* at lr * scale, the rest at lr; no decay on params with ndim <= 1; each param once."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        seen += group_names
        backbone = [".backbone." in f".{n}" for n in group_names]
        assert all(backbone) or not any(backbone), group_names  # a group is one lr
        assert group["lr"] == pytest.approx(lr * backbone_scale if backbone[0] else lr)
        small = [p.ndim <= 1 for p in group["params"]]
        assert all(small) or not any(small), group_names
        assert group["weight_decay"] == (0.0 if small[0] else pytest.approx(weight_decay))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)


# -- where the weights come from ------------------------------------------------------------------


def test_imagenet_weights_load_from_the_torch_hub_cache(torch_home, offline):
    state = cache_imagenet(torch_home, "resnet18")
    net = PretrainedResNet(arch="resnet18", weights="IMAGENET1K_V1", num_classes=7)
    assert offline == []  # read from the cache, no download tried
    assert_backbone_equals(net, state)
    assert isinstance(net.backbone.fc, nn.Identity) and (net.head.in_features, net.head.out_features) == (512, 7)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_imagenet_weights_without_cache_say_where_the_file_goes(torch_home, offline):
    name = Path(models.ResNet18_Weights.IMAGENET1K_V1.url).name
    with pytest.raises(FileNotFoundError) as info:
        PretrainedResNet(arch="resnet18", weights="IMAGENET1K_V1")
    assert offline == [models.ResNet18_Weights.IMAGENET1K_V1.url]  # it did try, and failed
    message = str(info.value)
    assert "model.net.weights=IMAGENET1K_V1" in message
    assert name in message and str(torch_home) in message  # the real folder, not a placeholder
    # Following the advice works.
    state = cache_imagenet(torch_home, "resnet18")
    assert_backbone_equals(PretrainedResNet(arch="resnet18", weights="IMAGENET1K_V1"), state)


def test_corrupted_cached_imagenet_file_is_a_clear_error(torch_home, offline):
    torch_home.mkdir(parents=True)
    cached = torch_home / Path(models.ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )
    with pytest.raises(ValueError) as info:
        PretrainedResNet(arch="resnet18", weights="IMAGENET1K_V1")
    assert "model.net.weights=IMAGENET1K_V1" in str(info.value) and str(cached) in str(info.value)


@pytest.mark.parametrize("layout", ["state_dict", "wrapped", "data_parallel", "pretrained_resnet"])
def test_weights_from_a_local_file(tmp_path, offline, layout):
    state = fake_state("resnet18", seed=1)
    saved = {
        "state_dict": state,
        "wrapped": {"state_dict": state, "epoch": 3},
        "data_parallel": {f"module.{k}": v for k, v in state.items()},
        # A PretrainedResNet's own state_dict: backbone.* plus its head.
        "pretrained_resnet": {
            **{f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")},
            "head.weight": torch.zeros(10, 512),
            "head.bias": torch.zeros(10),
        },
    }[layout]
    path = tmp_path / "weights.pth"
    torch.save(saved, path)
    net = PretrainedResNet(arch="resnet18", weights=str(path))
    assert_backbone_equals(net, state)
    assert offline == []


def test_weights_from_a_checkpoint_of_this_template(tmp_path, offline):
    original = fake_state("resnet18", seed=2)
    torch.save(original, tmp_path / "r18.pth")
    # Finetune everything for one short epoch: the checkpoint's backbone then differs from r18.pth.
    # Plain SGD and only last.ckpt keep the checkpoint small (fast to write).
    cfg = synthetic_cfg(
        tmp_path,
        tmp_path / "r18.pth",
        "model.net.freeze=none",
        "trainer.max_epochs=1",
        "optimizer.momentum=0",
        "optimizer.nesterov=false",
        "callbacks.model_checkpoint.save_top_k=0",
    )
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    trained = {k.removeprefix("net.backbone."): v for k, v in ckpt.items() if k.startswith("net.backbone.")}
    assert any(not torch.equal(trained[k], original[k]) for k in trained)  # training moved it
    net = PretrainedResNet(arch="resnet18", weights=str(last), num_classes=3, freeze="backbone")
    assert_backbone_equals(net, trained)
    assert net.head.out_features == 3
    # Through the config, as `model.net.weights=<run>/checkpoints/last.ckpt`.
    model = instantiate(synthetic_cfg(tmp_path, last, run="run2").model, optimizer=None)
    assert_backbone_equals(model.net, trained)


@pytest.mark.parametrize("content", ["random_bytes", "truncated", "empty"])
def test_corrupted_local_weights_name_model_net_weights(tmp_path, offline, content):
    path = tmp_path / "weights.pth"
    if content == "random_bytes":
        path.write_bytes(
            torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
            .numpy()
            .tobytes()
        )
    elif content == "truncated":
        torch.save(fake_state("resnet18"), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"model.net.weights={path}")):
        PretrainedResNet(arch="resnet18", weights=str(path))
    # What a run reports: one line naming the key (train.py prints it as `error: ...`, exit 2).
    with pytest.raises(ConfigError, match=re.escape(f"model.net.weights={path}")):
        train(synthetic_cfg(tmp_path, path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_weights_that_do_not_fit_the_arch(tmp_path, offline):
    torch.save(fake_state("resnet18"), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not fit resnet34"):
        PretrainedResNet(arch="resnet34", weights=str(tmp_path / "r18.pth"))
    with pytest.raises(FileNotFoundError, match="model.net.weights=.*no such file"):
        PretrainedResNet(arch="resnet18", weights=str(tmp_path / "missing.pth"))
    gray = fake_state("resnet18")
    gray["conv1.weight"] = gray["conv1.weight"][:, :1]  # weights of a 1-channel (grayscale) model
    torch.save(gray, tmp_path / "gray.pth")
    with pytest.raises(ValueError, match=r"other shapes, e.g. conv1.weight \(64, 1, 7, 7\) vs \(64, 3, 7, 7\)") as e:
        PretrainedResNet(arch="resnet18", weights=str(tmp_path / "gray.pth"))
    assert "\n" not in str(e.value)


# -- frozen vs finetuned --------------------------------------------------------------------------


def test_freeze_backbone_trains_only_the_head(tmp_path, offline):
    torch.save(fake_state("resnet18", seed=3), tmp_path / "r18.pth")
    # 2 epochs of 2 steps, with validation in between (Lightning switches modes around it).
    cfg = synthetic_cfg(tmp_path, tmp_path / "r18.pth", "trainer.max_epochs=2", "optimizer=adamw")
    assert cfg.model.net.freeze == "backbone"
    model, trainer, before = fit_in_process(cfg)
    assert trainer.global_step == 4
    after = backbone_snapshot(model.net)
    backbone_keys = [k for k in before if k.startswith("backbone.")]
    assert any(k.endswith("running_mean") for k in backbone_keys)
    for key in backbone_keys:  # parameters and BatchNorm statistics alike
        assert torch.equal(before[key], after[key]), key
    assert not any(p.requires_grad for p in model.net.backbone.parameters())
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["head.bias"], after["head.bias"])
    optimizer = trainer.optimizers[0]
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.net.head.parameters()}
    model.train()  # what any code that (re)starts training calls: the backbone stays a feature extractor
    assert model.training and model.net.head.training
    assert not any(m.training for m in model.net.backbone.modules())


def test_freeze_none_finetunes_the_backbone_at_a_lower_lr(tmp_path, offline):
    torch.save(fake_state("resnet18", seed=4), tmp_path / "r18.pth")
    cfg = synthetic_cfg(
        tmp_path,
        tmp_path / "r18.pth",
        "model.net.freeze=none",
        "trainer.max_epochs=1",
        "optimizer=adamw",
        "optimizer.weight_decay=0.01",
        "scheduler=none",
    )
    scale = cfg.model.param_groups.lr_scales.backbone
    assert scale == 0.1
    model, trainer, before = fit_in_process(cfg)
    after = backbone_snapshot(model.net)
    params = {n for n, _ in model.net.named_parameters()}
    for key in before:
        if key in params or key.endswith(("running_mean", "running_var")):
            assert not torch.equal(before[key], after[key]), key
    check_param_groups(model, trainer.optimizers[0], cfg.optimizer.lr, 0.01, scale)
    model.train()
    assert all(m.training for m in model.net.modules())
    assert sum(len(g["params"]) for g in trainer.optimizers[0].param_groups) == len(params)


@pytest.mark.parametrize("freeze, scale", [("none", 0.1), ("none", 0.25), ("backbone", 0.1)])
def test_param_groups_of_the_finetune_model(tmp_path, offline, freeze, scale):
    torch.save(fake_state("resnet18"), tmp_path / "r18.pth")
    cfg = synthetic_cfg(
        tmp_path,
        tmp_path / "r18.pth",
        f"model.net.freeze={freeze}",
        f"model.param_groups.lr_scales.backbone={scale}",
        "optimizer=sgd",
        "optimizer.lr=0.2",
        "optimizer.weight_decay=1e-3",
    )
    model = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=None, _convert_="all")
    optimizer = build_optimizer(model, model.optimizer_factory, **model.param_group_options)
    assert isinstance(optimizer, SGD)
    check_param_groups(model, optimizer, 0.2, 1e-3, scale)
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    assert lrs == pytest.approx([0.2 * scale, 0.2] if freeze == "none" else [0.2])


# -- the experiment -------------------------------------------------------------------------------


def experiment_cfg(tmp_path, *overrides):
    root = tmp_path / "cifar"
    if not root.exists():
        write_cifar10(root, per_batch=4)
    return compose_config(
        [
            "experiment=feature_extraction_cifar10",
            f"data.root={root}",
            "data.verify_md5=false",
            "data.num_workers=0",
            "logger=none",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            *overrides,
        ],
        run_dir=tmp_path / "run",
    )


def test_feature_extraction_experiment_composes_and_builds(tmp_path, torch_home, offline):
    cfg = experiment_cfg(tmp_path)
    assert (cfg.data.image_size, cfg.data.normalization) == (224, "imagenet")
    assert (cfg.model.net.arch, cfg.model.net.weights, cfg.model.net.freeze) == (
        "resnet34",
        "IMAGENET1K_V1",
        "backbone",
    )
    assert cfg.optimizer._target_ == "optlab.optim.AdamW"
    validate(cfg)
    state = cache_imagenet(torch_home, "resnet34")
    model = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=None, _convert_="all")
    assert_backbone_equals(model.net, state)
    assert model.net.head.out_features == 10
    assert offline == []


def test_feature_extraction_experiment_fast_dev_run(tmp_path, torch_home, offline):
    state = cache_imagenet(torch_home, "resnet34")
    cfg = experiment_cfg(tmp_path, "debug=fast_dev_run", "data.batch_size=2")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert offline == []
    assert state  # the weights it used were the cached fake ones (no download was tried)
