"""Check a composed config before anything expensive starts (process groups, data, GPU memory).

Every problem is one line naming the key, the bad value and the fix. Checks are a table of
(key, rule) pairs plus a signature check of every `_target_` node, so a fork's own classes get
unknown-argument errors for free.
"""

import inspect
import os
import zipfile
from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from optlab.launch import external_layout
from optlab.optim.param_groups import LAYER_DECAY_RULE, layer_decay_ok


class ConfigError(ValueError):
    """A problem with the user's config or command line: reported in one line, exit code 2."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# key -> (test, what it must be). A key missing from the config is not checked. The optimizer's
# hyperparameters are not here: its constructor owns their rules (check_optimizer).
RULES = {
    "seed": (lambda v: v is None or _int(v), "an integer or null"),
    "data.batch_size": (lambda v: _int(v) and v > 0, "a positive integer"),
    "data.num_workers": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "model.param_groups.layer_decay": (layer_decay_ok, LAYER_DECAY_RULE),
    "trainer.max_epochs": (lambda v: v is None or (_int(v) and v >= -1), "an integer >= -1 (-1: no limit)"),
    "trainer.max_steps": (lambda v: _int(v) and v >= -1, "an integer >= -1 (-1: no limit)"),
    "trainer.accumulate_grad_batches": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.gradient_clip_val": (lambda v: v is None or (_number(v) and v > 0), "a number > 0 or null"),
    "trainer.gradient_clip_algorithm": (lambda v: v in ("norm", "value"), "norm or value"),
    "trainer.precision": (
        lambda v: str(v) in {"32", "32-true", "64", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true"},
        "one of 32-true, 64-true, bf16-mixed, 16-mixed, bf16-true, 16-true (or 32, 64)",
    ),
    "trainer.channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "model.activation_checkpointing": (lambda v: isinstance(v, bool), "true or false"),
    "data.normalize_on_device": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.devices": (
        lambda v: v == "auto" or (_int(v) and (v >= 1 or v == -1)) or isinstance(v, (list, str)),
        "a positive integer, -1, 'auto' or a list of device ids",
    ),
}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _fail(key: str, value, must: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: it must be {must} (set it with `{key}=...`)")


def check_rules(cfg: DictConfig) -> None:
    for key, (test, must) in RULES.items():
        value = OmegaConf.select(cfg, key, default="__absent__")
        if value != "__absent__" and not test(value):
            _fail(key, value, must)


def check_targets(node, path: str = "") -> None:
    """Every `_target_` must import, and every key must be one of its arguments."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            try:
                obj = get_object(str(target))
            except Exception as e:
                raise ConfigError(f"{path or 'config'}._target_={target!r} cannot be imported ({e})") from None
            _check_signature(obj, node, path)
        for key in node.keys():
            if key not in HYDRA_KEYS and OmegaConf.is_config(node._get_node(key)):
                check_targets(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif OmegaConf.is_list(node):
        for i, item in enumerate(node):
            check_targets(item, f"{path}[{i}]")


# Keys of a config node that are read by optlab, not passed to its _target_ (compare.py's search space,
# the lr scaling rule, the memory format the model applies).
NOT_ARGUMENTS = {"optimizer": {"search_space", "lr_scaling"}, "trainer": {"channels_last"}}


def instantiable(node: DictConfig, group: str) -> DictConfig:
    """`node` without optlab's own keys, ready for hydra's instantiate (e.g. cfg.optimizer)."""
    drop = NOT_ARGUMENTS.get(group, set())
    if not any(k in node for k in drop):
        return node
    from omegaconf import open_dict

    kept = node.copy()
    with open_dict(kept):
        for key in drop:
            kept.pop(key, None)
    return kept


def _check_signature(obj, node: DictConfig, path: str) -> None:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node.keys():
        if key not in HYDRA_KEYS and key not in params and key not in NOT_ARGUMENTS.get(path, ()):
            accepted = ", ".join(k for k in params if k not in ("self", "args", "kwargs"))
            raise ConfigError(
                f"{path}.{key} is not an argument of {node._target_} (it takes: {accepted}); "
                f"remove it with `~{path}.{key}`"
            )


def check_devices(cfg: DictConfig) -> None:
    devices = OmegaConf.select(cfg, "trainer.devices")
    layout = external_layout()
    if layout is not None:  # torchrun / srun started the processes: the config must describe them
        nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
        if devices != layout.per_node or nodes != layout.nodes:
            raise ConfigError(
                f"{layout.launcher} started {layout.per_node} process(es) per node on {layout.nodes} "
                f"node(s) but trainer.devices={devices} trainer.num_nodes={nodes}; set "
                f"trainer.devices={layout.per_node} trainer.num_nodes={layout.nodes}"
            )
        return
    if not _int(devices) or devices < 1:
        return
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        available, what = torch.cuda.device_count(), "GPUs"
    else:
        available, what = os.cpu_count() or 1, "CPU cores (one process per device)"
    if devices > available:
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {available} {what}; "
            f"use trainer.devices={available} or fewer"
        )


def _resume_command(path: Path) -> str:
    """This command line with `ckpt_path=<path>` in place of the one given (train.py's; a generic one
    when called from Python)."""
    import shlex
    import sys

    args = sys.argv[1:] if Path(sys.argv[0]).name == "train.py" else []
    args = [a for a in args if not a.lstrip("+").startswith("ckpt_path=")]
    return shlex.join(["python", "train.py", *args, f"ckpt_path={path}"])


def _intact_sibling(path: Path) -> Path | None:
    """The newest other Lightning checkpoint in `path`'s folder that is whole (CRCs) with finite weights."""
    from optlab.safe_load import torch_file

    others = [p for p in path.parent.glob("*.ckpt") if p.is_file() and p.resolve() != path.resolve()]
    for other in sorted(others, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            blob = torch_file(other, "ckpt_path", mmap=True)  # verified: CRCs, then nan/inf
        except Exception:  # damaged, unreadable, or asks to run code: not a candidate
            continue
        if isinstance(blob, dict) and "state_dict" in blob:
            return other
    return None


def _damaged(ckpt, path: Path, why: str) -> ConfigError:
    """The one-line refusal of a damaged `ckpt_path`, naming the newest intact checkpoint beside it."""
    from optlab.safe_load import DamagedFileError

    other = _intact_sibling(path)
    if other is None:
        fix = f"no intact checkpoint is beside it in {path.parent}/: start a new run without ckpt_path"
    else:
        fix = f"the newest intact checkpoint beside it is {other}: resume with `{_resume_command(other)}`"
    return DamagedFileError(f"ckpt_path={ckpt} is damaged ({why}) and was not loaded; {fix}")


def check_checkpoint(cfg: DictConfig) -> None:
    """`ckpt_path` (resume, or what train=false tests): a whole torch file (every CRC of its archive
    checked) that loads without running code (mmapped), holds a Lightning state_dict, and has finite
    weights and optimizer state; a bad one fails before training, naming the newest intact one beside it."""
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt} does not exist; pass a file such as logs/train/<run_id>/checkpoints/last.ckpt"
        )
    if not zipfile.is_zipfile(path):  # torch.save's format is a zip archive: a cut-off file is not
        raise _damaged(ckpt, path, "corrupted or not a torch checkpoint: it is not a whole zip archive")
    from optlab.safe_load import archive_damage, content_damage, torch_file

    why = archive_damage(path)  # before unpickling: torch's loader reads no CRC
    if why is not None:
        raise _damaged(ckpt, path, why)
    try:
        blob = torch_file(path, "ckpt_path", mmap=True, verify=False)  # mmap: tensors read only when checked
    except ConfigError:
        raise
    except Exception as e:
        raise _damaged(ckpt, path, f"corrupted: it cannot be read ({type(e).__name__})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ConfigError(
            f"ckpt_path={ckpt} is not a Lightning checkpoint (no state_dict); "
            "for pretrained weights use model.net.weights=<file>"
        )
    why = content_damage(path, blob)
    if why is not None:
        raise _damaged(ckpt, path, why)


def check_weights_file(cfg: DictConfig) -> None:
    """`model.net.weights=<local file>` (a finetune's starting weights): refused before anything starts
    when damaged (CRCs, nan/inf), like ckpt_path. Unreadable files are worded where the weights load."""
    weights = OmegaConf.select(cfg, "model.net.weights")
    path = Path(str(weights)).expanduser() if isinstance(weights, str) else None
    if path is None or path.suffix not in (".pt", ".pth", ".ckpt") or not path.is_file():
        return
    from optlab.safe_load import DamagedFileError, torch_file

    try:
        torch_file(path, "model.net.weights", mmap=zipfile.is_zipfile(path))
    except DamagedFileError as e:
        raise DamagedFileError(f"{e}; use another copy of the file") from None
    except Exception:  # asks to run code (the net's check_config words it), cut off, not a torch file
        pass


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizer judges its own hyperparameters (optim/hyperparameters.py for ours): build it on
    one small tensor and report what its constructor refuses, naming the key where it says which."""
    node = cfg.get("optimizer")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    import torch
    from hydra.utils import instantiate

    from optlab.optim.hyperparameters import HyperparameterError

    try:
        instantiate(instantiable(node, "optimizer"))([torch.nn.Parameter(torch.zeros(2, 2))])
    except HyperparameterError as e:
        _fail(f"optimizer.{e.name}", OmegaConf.select(cfg, f"optimizer.{e.name}"), e.must)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"optimizer ({node._target_}) refuses its settings: {e}; `python train.py --cfg job -p optimizer` shows them"
        ) from None


def check_lr_scaling(cfg: DictConfig) -> None:
    """optimizer.lr_scaling's rule and base, as optlab.optim.lr_scaling.scaled_lr judges them."""
    scaling = OmegaConf.select(cfg, "optimizer.lr_scaling")
    if scaling is None:
        return
    from optlab.optim.lr_scaling import scaled_lr

    try:
        scaled_lr(1.0, 1, scaling.get("rule", "none"), scaling.get("base_batch_size", 256))
    except ValueError as e:
        raise ConfigError(f"{e} (set it with `optimizer.lr_scaling.<key>=...`)") from None


def check_tune(cfg: DictConfig) -> None:
    """tune=lr_find / batch_size: Lightning's Tuner runs in one process only."""
    target = OmegaConf.select(cfg, "tune._target_")
    if not target:
        return
    from optlab.run import _process_count

    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    processes = _process_count(devices) * OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if processes > 1 or external_layout() is not None:
        name = str(target).rsplit(".", 1)[-1]
        raise ConfigError(
            f"tune={name} runs in one process (Lightning's Tuner supports no multi-process strategy) but "
            f"trainer.devices={devices}; set trainer.devices=1, and use the result with any strategy"
        )


def check_schedule_free(cfg: DictConfig) -> None:
    """A schedule-free optimizer needs no lr schedule: its warmup is optimizer.warmup_steps."""
    from optlab.callbacks.schedulefree import is_schedule_free

    target = OmegaConf.select(cfg, "optimizer._target_")
    scheduler = OmegaConf.select(cfg, "scheduler._target_")
    if target and scheduler and is_schedule_free(get_object(str(target))):
        name = str(target).rsplit(".", 1)[-1]
        raise ConfigError(
            f"{name} is schedule-free but a scheduler ({str(scheduler).rsplit('.', 1)[-1]}) would schedule its lr "
            "too; use scheduler=none (warm up with optimizer.warmup_steps)"
        )


def check_channels_last(cfg: DictConfig) -> None:
    """FSDP2's fully_shard takes contiguous parameters only (NotImplementedError on a channels_last one)."""
    strategy = str(OmegaConf.select(cfg, "strategy._target_", default="") or "")
    if OmegaConf.select(cfg, "trainer.channels_last") and strategy.endswith("FSDP2Strategy"):
        raise ConfigError(
            "trainer.channels_last=true: strategy=fsdp (FSDP2) shards contiguous parameters only; "
            "set trainer.channels_last=false, or use strategy=ddp or allreduce"
        )


def check_scheduler(cfg: DictConfig) -> None:
    """The schedule judges its own options (optlab.schedulers raise ValueError naming the key):
    build it on a stand-in optimizer for a 100-step run."""
    node = cfg.get("scheduler")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    import torch
    from hydra.utils import instantiate

    stand_in = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        instantiate(node)(stand_in, total_steps=100)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{e} (scheduler={node._target_.rsplit('.', 1)[-1]})") from None


def check_classes(cfg: DictConfig) -> None:
    """The class of `data`, `model.net` or `strategy` may define a staticmethod `check_config(node)`
    for what only it knows: files on disk (a dataset, pretrained weights), allreduce's algorithm."""
    for key in ("data", "model.net", "strategy"):
        target = OmegaConf.select(cfg, f"{key}._target_")
        check = getattr(get_object(target), "check_config", None) if target else None
        if check is not None:
            check(OmegaConf.select(cfg, key))


def check_callbacks(cfg: DictConfig) -> None:
    """A callback class may define `check_config(node, cfg)` for rules that involve other keys."""
    for name, node in (OmegaConf.select(cfg, "callbacks") or {}).items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        check = getattr(get_object(target), "check_config", None) if target else None
        if check is not None:
            check(node, cfg, f"callbacks.{name}")


def check_launcher(hydra_cfg) -> None:
    """`-m` with hydra/launcher=X: its plugin is installed, and for SLURM the partition exists."""
    name = hydra_cfg.runtime.choices.get("hydra/launcher", "basic")
    launcher = hydra_cfg.launcher
    try:
        get_object(str(launcher._target_))
    except Exception:
        raise ConfigError(
            f"hydra/launcher={name} needs its Hydra plugin, which is not installed: pip install -e '.[cluster]'"
        ) from None
    if not str(launcher._target_).endswith("SlurmLauncher"):
        return
    import shutil
    import subprocess

    if shutil.which("sbatch") is None:
        raise ConfigError(
            f"hydra/launcher={name} submits with SLURM's sbatch, which is not on this machine; "
            "run on a SLURM login node, or use hydra/launcher=submitit_local"
        )
    partition = launcher.get("partition")
    if partition:
        known = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60).stdout.split()
        if known and str(partition) not in known:
            raise ConfigError(
                f"hydra.launcher.partition={partition} is not a partition of this cluster; "
                f"use one of: {', '.join(known)}"
            )


# Loggers whose package is an extra of optlab's install (pyproject's optional-dependencies).
LOGGER_EXTRAS = {"lightning.pytorch.loggers.TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard")}


def check_logger_packages(cfg: DictConfig) -> None:
    import importlib.util

    for name, node in (OmegaConf.select(cfg, "logger") or {}).items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target in LOGGER_EXTRAS:
            modules, extra = LOGGER_EXTRAS[target]
            if not any(importlib.util.find_spec(m) for m in modules):
                raise ConfigError(
                    f"logger.{name} needs the {modules[0]} package, which is not installed: "
                    f"pip install -e '.[{extra}]' (or pip install {modules[0]})"
                )


def validate(cfg: DictConfig) -> None:
    check_rules(cfg)
    check_targets(cfg)
    check_optimizer(cfg)
    check_scheduler(cfg)
    check_schedule_free(cfg)
    check_channels_last(cfg)
    check_lr_scaling(cfg)
    check_tune(cfg)
    check_logger_packages(cfg)
    check_devices(cfg)
    check_classes(cfg)
    check_callbacks(cfg)
    check_checkpoint(cfg)
    check_weights_file(cfg)
