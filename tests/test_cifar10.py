"""CIFAR-10 through torchvision's real loader, on tiny files written in the real format.

The python version of CIFAR-10 is `cifar-10-batches-py/` with five `data_batch_*` files, a
`test_batch` and `batches.meta`: pickled dicts (written by Python 2, read back with
`encoding="latin1"`, so the keys are str) with "data" a uint8 (N, 3072) array of R, G, B planes
and "labels" a list of ints; the meta file has "label_names". The generated files are a few images
per batch, so every test here runs offline in seconds.
"""

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from optlab.run import compose_config, train
from optlab.validate import ConfigError, validate

REPO = Path(__file__).resolve().parents[1]
BASE = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
# The published per-channel statistics (mean, std), written out so a wrong table in src shows up.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 8, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write a tiny CIFAR-10 under root/cifar-10-batches-py; returns {"train"|"test": (data, labels)}.

    Each image is noise plus a class-dependent brightness per channel, so a net can learn it.
    """
    folder = Path(root) / BASE
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 160, size=(10, 3))
    written = {"train": ([], []), "test": ([], [])}
    for name in TRAIN_FILES + ["test_batch"]:
        labels = [int(c) for c in rng.integers(0, 10, size=per_batch)]
        planes = rng.integers(0, 96, size=(per_batch, 3, 1024)) + colors[labels][:, :, None]
        data = planes.reshape(per_batch, 3072).astype(np.uint8)
        batch = {
            "batch_label": f"tiny {name}",
            "labels": labels,
            "data": data,
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        split = "test" if name == "test_batch" else "train"
        written[split][0].append(data)
        written[split][1].extend(labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": LABEL_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return {split: (np.concatenate(arrays), labels) for split, (arrays, labels) in written.items()}


@pytest.fixture
def cifar(tmp_path):
    root = tmp_path / "cifar"
    return root, write_cifar10(root)


def cifar_cfg(tmp_path, root, *overrides):
    return compose_config(
        [
            "data=cifar10",
            f"data.root={root}",
            "data.num_workers=0",
            "logger=none",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            *overrides,
        ],
        run_dir=tmp_path / "run",
    )


def expected_image(row: np.ndarray, normalization: str) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION[normalization])
    return (torch.from_numpy(row.reshape(3, 32, 32)).float() / 255 - mean) / std


def test_generated_files_fail_the_md5_check_with_a_clear_error(tmp_path, cifar):
    root, _ = cifar
    cfg = cifar_cfg(tmp_path, root)
    assert cfg.data.verify_md5 is True  # the default: real downloads are checked
    validate(cfg)  # the folder and every file are there: only the md5 differs
    instantiate(cifar_cfg(tmp_path, root, "data.verify_md5=false").data).setup("fit")  # must not turn it off for all
    dm = instantiate(cfg.data)
    with pytest.raises(FileNotFoundError, match=re.escape(f"data.root={root}")) as info:
        dm.setup("fit")
    assert "md5" in str(info.value) and "data.verify_md5=false" in str(info.value)


def test_loads_generated_files_with_torchvisions_loader(tmp_path, cifar):
    root, written = cifar
    cfg = cifar_cfg(tmp_path, root, "data.verify_md5=false", "data.val_size=10")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    train_data, train_labels = written["train"]
    test_data, test_labels = written["test"]
    full = dm.train_set.dataset
    assert full.classes == LABEL_NAMES  # batches.meta was read
    assert len(dm.train_set) == 30 and len(dm.val_set) == 10 and len(dm.test_set) == 8
    train_idx, val_idx = dm.train_set.indices, dm.val_set.indices
    assert sorted(train_idx + val_idx) == list(range(40))  # a split of all 5 batches, no overlap
    # Evaluation transforms are deterministic: every pixel and label comes back as written.
    for i, idx in enumerate(val_idx):
        x, y = dm.val_set[i]
        assert y == train_labels[idx]
        torch.testing.assert_close(x, expected_image(train_data[idx], "cifar10"), atol=1e-5, rtol=0)
    for i in range(len(dm.test_set)):
        x, y = dm.test_set[i]
        assert y == test_labels[i]
        torch.testing.assert_close(x, expected_image(test_data[i], "cifar10"), atol=1e-5, rtol=0)
    # Training images are augmented (crop + flip) but keep their shape and label.
    for i, idx in enumerate(train_idx[:5]):
        x, y = dm.train_set[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == train_labels[idx]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (min(cfg.data.batch_size, 30), 3, 32, 32) and y.dtype == torch.int64


@pytest.mark.parametrize("val_size, n_val", [(4, 4), (13, 13), (5000, 20)])  # capped at half the train files
def test_val_size_sets_the_split(tmp_path, cifar, val_size, n_val):
    root, written = cifar
    dm = instantiate(cifar_cfg(tmp_path, root, "data.verify_md5=false", f"data.val_size={val_size}").data)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (40 - n_val, n_val)
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    assert [dm.val_set[i][1] for i in range(n_val)] == [written["train"][1][j] for j in dm.val_set.indices]


def test_224px_with_imagenet_normalization(tmp_path, cifar):
    root, written = cifar
    dm = instantiate(
        cifar_cfg(
            tmp_path,
            root,
            "data.verify_md5=false",
            "data.val_size=4",
            "data.image_size=224",
            "data.normalization=imagenet",
        ).data
    )
    dm.setup("fit")
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION["imagenet"])
    for dataset, (data, labels) in ((dm.val_set, written["train"]), (dm.test_set, written["test"])):
        indices = getattr(dataset, "indices", range(len(dataset)))
        for i, idx in enumerate(list(indices)[:4]):
            x, y = dataset[i]
            assert x.shape == (3, 224, 224) and y == labels[idx]
            # Upsampling keeps each channel's mean brightness; un-normalizing with ImageNet's
            # statistics must give it back (CIFAR-10's statistics would be off by ~0.03-0.1).
            pixels = x * std + mean
            assert pixels.min() > -0.05 and pixels.max() < 1.05
            source = torch.from_numpy(data[idx].reshape(3, -1)).float().mean(1) / 255
            torch.testing.assert_close(pixels.mean((1, 2)), source, atol=0.01, rtol=0)
    x, _ = dm.train_set[0]
    assert x.shape == (3, 224, 224)


def test_missing_root_is_a_config_error(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ConfigError) as info:
        validate(cifar_cfg(tmp_path, empty))
    message = str(info.value)
    assert f"data.root={empty}" in message and BASE in message
    assert "point data.root at" in message and "data.download=true" in message


def test_incomplete_folder_is_a_config_error(tmp_path, cifar):
    root, _ = cifar
    (root / BASE / "data_batch_3").unlink()
    (root / BASE / "batches.meta").unlink()
    with pytest.raises(ConfigError, match=re.escape(f"data.root={root}")) as info:
        validate(cifar_cfg(tmp_path, root, "data.verify_md5=false"))
    assert "data_batch_3" in str(info.value) and "batches.meta" in str(info.value)
    assert "data_batch_1" not in str(info.value)


def test_cli_reports_missing_root_in_one_line_and_writes_nothing(tmp_path):
    empty, logs = tmp_path / "nothing_here", tmp_path / "logs"
    empty.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=cifar10",
            f"data.root={empty}",
            "logger=none",
            f"paths.log_dir={logs}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and f"data.root={empty}" in lines[0]
    assert not logs.exists() or not any(logs.rglob("*"))
    assert not (tmp_path / "data").exists()


def test_fast_dev_run_on_generated_files(tmp_path, cifar):
    root, _ = cifar
    cfg = cifar_cfg(
        tmp_path,
        root,
        "debug=fast_dev_run",
        "data.verify_md5=false",
        "data.batch_size=4",
        "model.net.blocks=[1]",
        "model.net.widths=[8]",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and np.isfinite(metrics["test/loss"])
    assert np.isfinite(metrics["train/loss"])
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow  # ~10 s alone on 2 cores; slower when the machine is busy
def test_learns_the_generated_pattern(tmp_path):
    root = tmp_path / "cifar"
    write_cifar10(root, per_batch=64)
    cfg = cifar_cfg(
        tmp_path,
        root,
        "data.verify_md5=false",
        "data.val_size=64",
        "data.batch_size=32",
        "data.augment=false",
        "model.net.blocks=[1]",
        "model.net.widths=[8]",
        "trainer.max_epochs=6",
        "optimizer=adamw",
        "optimizer.lr=3e-2",
        "~callbacks.progress_bar",
    )
    metrics = train(cfg)
    assert metrics["val/acc_best"] > 0.5 and metrics["test/acc"] > 0.5  # chance is 0.1
