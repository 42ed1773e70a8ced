"""torchvision ResNet-18/34 with pretrained weights and a new head, frozen or finetuned.

Weights come from torchvision (ImageNet; downloaded once into $TORCH_HOME/hub/checkpoints, loaded
from there offline) or from a local file: a state_dict, or a Lightning checkpoint of this template.
"""

import zipfile
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from optlab.safe_load import UnsafeFileError, torch_file, weights_only_refusal

ARCHS = {"resnet18": models.resnet18, "resnet34": models.resnet34}
FREEZE = ("backbone", "none")


def _load_local(path: Path) -> dict[str, torch.Tensor]:
    try:
        blob = torch_file(path, "model.net.weights")
    except UnsafeFileError:
        raise
    except Exception as e:  # truncated or not a torch file
        raise ValueError(f"model.net.weights={path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"model.net.weights={path} holds no state_dict")
    # A Lightning checkpoint of ImageClassifier(PretrainedResNet) prefixes keys with net.backbone.
    for prefix in ("net.backbone.", "backbone.", "module."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return state


def _local_path(weights: str) -> Path | None:
    """The file `model.net.weights` names, or None for a torchvision weights name (IMAGENET1K_V1)."""
    path = Path(weights).expanduser()
    return path if path.suffix in (".pt", ".pth", ".ckpt") or path.exists() else None


def _cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"  # $TORCH_HOME/hub/checkpoints, resolved


class PretrainedResNet(nn.Module):
    """`model=resnet_finetune`'s net: the torchvision ResNet as `backbone` (its fc an Identity) and a new `head`.
    `freeze=backbone` trains the head only, the backbone kept in eval mode so its BatchNorm statistics stay
    the pretrained ones; `freeze=none` finetunes everything."""

    def __init__(
        self,
        arch: str = "resnet34",
        weights: str | None = "IMAGENET1K_V1",
        num_classes: int = 10,
        freeze: str = "backbone",
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"model.net.arch={arch!r}: use one of {sorted(ARCHS)}")
        if freeze not in FREEZE:
            raise ValueError(f"model.net.freeze={freeze!r}: use one of {list(FREEZE)}")
        self.backbone = ARCHS[arch](weights=None)
        self.pretrained = bool(weights)  # model.init must not overwrite these (ImageClassifier checks)
        if weights:
            state = {k: v for k, v in self._pretrained_state(arch, str(weights)).items() if not k.startswith("fc.")}
            own = self.backbone.state_dict()
            # Checked here: load_state_dict reports a shape mismatch as a multi-line RuntimeError.
            wrong = [
                f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                for k, v in state.items()
                if k in own and v.shape != own[k].shape
            ]
            if wrong:
                raise ValueError(
                    f"model.net.weights={weights} does not fit {arch}: {len(wrong)} tensors have other "
                    f"shapes, e.g. {wrong[0]}; pick the arch the weights were trained with"
                )
            missing = [
                k for k in self.backbone.load_state_dict(state, strict=False).missing_keys if not k.startswith("fc.")
            ]
            if missing:
                raise ValueError(f"model.net.weights={weights} does not fit {arch}: missing {missing[:3]}...")
        features = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.head = nn.Linear(features, num_classes)
        self.frozen = freeze == "backbone"
        if self.frozen:
            self.backbone.requires_grad_(False)
            # Lightning (2.2+) trains modules in the mode it finds them and never calls .train() at fit
            # start, so a fresh, train-mode backbone would update its BatchNorm statistics.
            self.backbone.eval()

    def lr_layers(self) -> list[str | tuple[str, ...]]:
        """Layers for layer-wise lr decay, input to output; the stem conv and its BN are one layer."""
        return [("backbone.conv1", "backbone.bn1"), *(f"backbone.layer{i}" for i in range(1, 5)), "head"]

    @staticmethod
    def check_config(node) -> None:
        """Before training: a weights file that would run code when loaded is refused here (one
        line, exit 2), whether named by path or found in torchvision's cache. mmap: cheap."""
        weights = node.get("weights")
        if not weights or node.get("arch") not in ARCHS:
            return
        path, value = _local_path(str(weights)), None
        if path is None and str(weights) in models.get_model_weights(node.arch).__members__:
            path, value = _cache_dir() / Path(models.get_model_weights(node.arch)[str(weights)].url).name, weights
        if path is not None and path.is_file():
            try:
                torch_file(path, "model.net.weights", mmap=zipfile.is_zipfile(path), value=value)
            except UnsafeFileError:
                raise
            except Exception:  # cut off, not a torch file: worded where the weights are loaded
                pass

    @staticmethod
    def _pretrained_state(arch: str, weights: str) -> dict[str, torch.Tensor]:
        path = _local_path(weights)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"model.net.weights={weights}: no such file")
            return _load_local(path)
        enum = models.get_model_weights(arch)
        if weights not in enum.__members__:
            raise ValueError(
                f"model.net.weights={weights!r}: use one of {list(enum.__members__)}, a file path, or null"
            )
        name = Path(enum[weights].url).name
        cache = _cache_dir()
        try:  # torch.hub's loader defaults to weights_only=False: a planted cache file would run code
            return enum[weights].get_state_dict(progress=False, weights_only=True)
        except OSError as e:  # URLError offline, with nothing cached
            raise FileNotFoundError(
                f"model.net.weights={weights}: cannot download ({e}); offline, put the file {name} in {cache}/ "
                "or pass a local path"
            ) from None
        except Exception as e:  # a cached file that asks to run code, is cut off or is not a torch file
            refusal = weights_only_refusal(e, "model.net.weights", cache / name, weights)
            if refusal is not None:
                raise refusal from None
            raise ValueError(
                f"model.net.weights={weights}: {cache / name} is not a readable checkpoint ({type(e).__name__}: "
                f"{e}); delete it to download again, or replace it with a good copy"
            ) from None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a feature extractor keeps its BatchNorm statistics: eval mode always
            self.backbone.eval()
        return self

    def residual_blocks(self) -> list[nn.Module]:
        """torchvision's residual blocks (layer1..layer4): the units of FSDP2 and activation checkpointing."""
        return [
            block
            for layer in (self.backbone.layer1, self.backbone.layer2, self.backbone.layer3, self.backbone.layer4)
            for block in layer
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
