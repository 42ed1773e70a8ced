"""Every option of every config group composes, validates and instantiates."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from optlab.run import CONFIG_DIR, _instantiate_all
from optlab.validate import instantiable, validate

GROUPS = ["data", "model", "optimizer", "scheduler", "strategy", "logger", "callbacks", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def offline_overrides(tmp_path: Path) -> list[str]:
    """What every option needs to build offline: a CIFAR folder, no ImageNet download."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).touch()  # building objects reads nothing; setup() would
    return [f"paths.data_dir={tmp_path / 'data'}"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_options(group):
    assert options(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_option_composes_and_instantiates(group, option, make_cfg, tmp_path):
    overrides = offline_overrides(tmp_path) + [f"{group}={option}"]
    if "weights" in make_cfg(*overrides).model.net:
        overrides.append("model.net.weights=null")  # no ImageNet download here: see test_finetune.py
    cfg = make_cfg(*overrides)
    validate(cfg)
    datamodule, model, trainer = _instantiate_all(cfg)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert model.net.head.out_features == cfg.data.num_classes
    if group == "optimizer":
        optimizer = instantiate(instantiable(cfg.optimizer, "optimizer"))([{"params": list(model.parameters())}])
        assert optimizer.defaults["lr"] == cfg.optimizer.lr
    _finish_loggers(trainer)


def _finish_loggers(trainer):
    import wandb

    if wandb.run is not None:
        wandb.finish()


def test_default_config_is_the_documented_one(make_cfg):
    cfg = make_cfg()
    assert cfg.data._target_.endswith("DigitsDataModule")
    assert cfg.model.net._target_.endswith("ResNet")
    assert cfg.logger.wandb.offline is None  # offline unless WANDB_MODE=online (tests/test_wandb.py)
    assert cfg.optimized_metric == "val/acc_best"


def test_a_logger_whose_extra_is_missing_names_the_install(make_cfg, monkeypatch):
    import importlib.util

    from optlab.validate import ConfigError, validate

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m.startswith("tensorboard") else real(m, *a))
    with pytest.raises(ConfigError, match=r"logger.tensorboard needs the tensorboard package.*\[tensorboard\]"):
        validate(make_cfg("logger=tensorboard"))
