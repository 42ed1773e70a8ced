"""No file a user names can run code: every loader refuses a pickle that asks to.

The malicious files are built here: their pickle calls `os.system("touch <marker>")` when loaded,
so a loader that runs them leaves the marker behind. Each way a file enters the template is tried
(train.py and sweep.py options, torchvision's weight cache, CIFAR-10 batches, the Python API, the
benchmark scripts); then our own checkpoints (every optimizer and schedule) must still load with
`weights_only=True` and resume; and a source scan keeps unsafe loaders out of the code.
"""

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision import models

from conftest import REPO
from optlab.cli import preflight
from optlab.data.cifar10 import CIFAR10Files
from optlab.models import PretrainedResNet
from optlab.run import CONFIG_DIR, compose_config, train
from optlab.safe_load import UnsafeFileError, restricted_pickle, torch_file
from test_cifar10 import BASE, write_cifar10


class RunsCode:
    """Unpickling this calls os.system: a stand-in for any code a shared file could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "the malicious file's code ran"


def lightning_like(path: Path, marker: Path) -> Path:
    """A checkpoint that looks like ours (state_dict, epoch, ...) with the payload in its hparams."""
    torch.save(
        {
            "state_dict": {"net.head.weight": torch.zeros(10, 4)},
            "epoch": 3,
            "global_step": 30,
            "hyper_parameters": {"note": RunsCode(marker)},
        },
        path,
    )
    return path


def assert_refused(result, key: str, logs: Path) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}="), lines
    assert "posix.system" in lines[0] and "was not loaded" in lines[0]
    assert not logs.exists(), "a refused file must stop the run before anything is written"


# -- every way in: pre-flight (in-process, fast) and the real commands (slow) ------------------------


def test_train_ckpt_path_cli(cli, tmp_path, marker):
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD flips torch's *default*: every load here must state weights_only.
    evil = lightning_like(tmp_path / "last.ckpt", marker)
    result = cli([f"ckpt_path={evil}", f"paths.log_dir={tmp_path / 'logs'}"], TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    assert_refused(result, "ckpt_path", tmp_path / "logs")


def evil_weights(tmp_path: Path, marker: Path, suffix: str) -> Path:
    path = tmp_path / f"weights{suffix}"
    torch.save({"conv1.weight": torch.zeros(1), "extra": RunsCode(marker)}, path)
    return path


def plant_in_torchvision_cache(torch_home: Path, marker: Path) -> None:
    """torch.hub loads its cache with weights_only=False unless told: a file planted there."""
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"payload": RunsCode(marker)}, cache / Path(models.ResNet18_Weights.IMAGENET1K_V1.url).name)


CACHED = ["model=resnet_finetune", "model.net.arch=resnet18", "model.net.weights=IMAGENET1K_V1"]


@pytest.mark.parametrize("source", ["ckpt_path", ".pt", ".pth", ".ckpt", "torchvision cache"])
def test_preflight_refuses(capsys, tmp_path, marker, monkeypatch, source):
    if source == "ckpt_path":
        args, key = [f"ckpt_path={lightning_like(tmp_path / 'last.ckpt', marker)}"], "ckpt_path"
    elif source == "torchvision cache":
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        plant_in_torchvision_cache(tmp_path / "torch_home", marker)
        args, key = CACHED, "model.net.weights"
    else:
        args, key = (
            ["model=resnet_finetune", f"model.net.weights={evil_weights(tmp_path, marker, source)}"],
            "model.net.weights",
        )
    with pytest.raises(SystemExit) as exc:
        preflight([*args, f"paths.log_dir={tmp_path / 'logs'}"], CONFIG_DIR)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}=") and "\n" not in err and "posix.system" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("source", ["weights file", "torchvision cache"])
def test_train_model_net_weights_cli(cli, tmp_path, marker, source):
    if source == "torchvision cache":
        plant_in_torchvision_cache(tmp_path / "torch_home", marker)
        args = CACHED
    else:
        args = ["model=resnet_finetune", f"model.net.weights={evil_weights(tmp_path, marker, '.pth')}"]
    result = cli([*args, f"paths.log_dir={tmp_path / 'logs'}"], TORCH_HOME=str(tmp_path / "torch_home"))
    assert_refused(result, "model.net.weights", tmp_path / "logs")


@pytest.mark.slow
def test_train_cifar10_batch_without_md5_check_cli(cli, tmp_path, marker):
    """Without the md5 check, the batches are read by our allow-listed unpickler (at data setup)."""
    root = tmp_path / "cifar"
    write_cifar10(root)
    with open(root / BASE / "data_batch_3", "wb") as f:
        pickle.dump({"data": RunsCode(marker), "labels": [0]}, f, protocol=2)
    result = cli(
        [
            "data=cifar10",
            f"data.root={root}",
            "data.verify_md5=false",
            "data.num_workers=0",
            "logger=none",
            "trainer.max_epochs=1",
            "++trainer.enable_progress_bar=false",
            f"paths.log_dir={tmp_path / 'logs'}",
        ]
    )
    assert result.returncode == 2, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "data.root=" in error[0] and "posix.system" in error[0], result.stderr[-2000:]


def run_script(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_sweep_options(tmp_path, marker):
    evil = lightning_like(tmp_path / "evil.ckpt", marker)
    logs = tmp_path / "logs"
    for option, key in (
        ([f"ckpt_path={evil}"], "ckpt_path"),
        (["model=resnet_finetune", f"model.net.weights={evil}"], "model.net.weights"),
    ):
        result = run_script("sweep.py", *option, "n_trials=1", f"paths.log_dir={logs}")
        assert_refused(result, key, logs)


@pytest.mark.slow
def test_benchmark_scripts(tmp_path, marker):
    """The benchmarks reach files only through train.py's options (default_run, strategy_step pass
    overrides to it; template_overhead builds scratch ResNets only); the scan below covers the rest."""
    evil = lightning_like(tmp_path / "evil.ckpt", marker)
    result = run_script("benchmarks/default_run.py", "--runs", "1", f"ckpt_path={evil}")
    assert result.returncode != 0 and "error: ckpt_path=" in result.stderr and "posix.system" in result.stderr


# -- the Python API ---------------------------------------------------------------------------------


def test_api_refuses_and_names_the_key(tmp_path, marker):
    evil = lightning_like(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeFileError, match=r"^ckpt_path=.*posix\.system"):
        torch_file(evil, "ckpt_path")
    with pytest.raises(UnsafeFileError, match="model.net.weights="):
        PretrainedResNet(arch="resnet18", weights=str(evil))
    with pytest.raises(UnsafeFileError, match="ckpt_path="):
        train(
            compose_config(
                [f"ckpt_path={evil}", "logger=none", f"paths.log_dir={tmp_path / 'logs'}"], run_dir=tmp_path / "run"
            )
        )
    root = tmp_path / "cifar"
    write_cifar10(root)
    (root / BASE / "test_batch").write_bytes(pickle.dumps({"data": RunsCode(marker)}, protocol=2))
    with pytest.raises(UnsafeFileError, match="data.root="):
        CIFAR10Files(str(root), train=False, verify_md5=False)


def test_lightnings_own_load_is_weights_only(tmp_path, marker, monkeypatch):
    """Past the pre-flight check (skipped here), trainer.fit's own load of ckpt_path refuses too,
    even with torch's default switched to unsafe."""
    import optlab.validate

    monkeypatch.setattr(optlab.validate, "check_checkpoint", lambda cfg: None)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil = lightning_like(tmp_path / "evil.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):
        train(
            compose_config(
                [
                    f"ckpt_path={evil}",
                    "logger=none",
                    "test=false",
                    "trainer.enable_progress_bar=false",
                    f"paths.log_dir={tmp_path / 'logs'}",
                ],
                run_dir=tmp_path / "run",
            )
        )


def test_restricted_pickle_allows_only_what_it_lists(tmp_path, marker):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2.5, "s", b"b"]}, protocol=2))
    assert restricted_pickle(path, {("_codecs", "encode"): __import__("codecs").encode}, "k") == {
        "a": [1, 2.5, "s", b"b"]
    }
    path.write_bytes(pickle.dumps({"a": RunsCode(marker)}))
    with pytest.raises(UnsafeFileError, match=r"^k=.*posix\.system"):
        restricted_pickle(path, {}, "k")


# -- our own checkpoints still load safely and resume -----------------------------------------------

OPTIMIZERS = sorted(p.stem for p in (REPO / "conf" / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (REPO / "conf" / "scheduler").glob("*.yaml"))
SHORT = [
    "logger=none",
    "test=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
]


@pytest.mark.parametrize(
    "optimizer, scheduler",
    [(o, "none" if o.endswith("schedulefree") else "cosine") for o in OPTIMIZERS]  # schedule-free: no schedule
    + [("adamw", s) for s in SCHEDULERS if s != "cosine"],
)
def test_our_checkpoints_load_weights_only_and_resume(tmp_path, optimizer, scheduler):
    """A run that crashes in epoch 2 resumes from epoch 1's last.ckpt through the safe loaders."""
    run = tmp_path / "run"
    common = [
        *SHORT,
        "trainer.max_epochs=2",
        f"optimizer={optimizer}",
        f"scheduler={scheduler}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    with pytest.raises(RuntimeError, match="deliberate failure"):
        train(
            compose_config([*common, "+callbacks.boom._target_=helpers.RaiseAt", "+callbacks.boom.step=4"], run_dir=run)
        )
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in [p.name for p in checkpoints] and len(checkpoints) == 2, checkpoints
    for path in checkpoints:
        blob = torch_file(path, "ckpt_path")
        assert blob["global_step"] == 3 and blob["optimizer_states"] and blob["lr_schedulers"] is not None
    last = run / "checkpoints" / "last.ckpt"
    train(compose_config([*common, f"ckpt_path={last}"], run_dir=run))
    assert torch_file(last, "ckpt_path")["global_step"] == 6  # 3 steps restored + 3 more


def test_a_test_only_run_tests_the_checkpoint_it_is_given(tmp_path):
    common = [o for o in SHORT if o != "test=false"] + ["trainer.max_epochs=1", f"paths.log_dir={tmp_path / 'logs'}"]
    trained = train(compose_config(common, run_dir=tmp_path / "a"))
    (best,) = (tmp_path / "a" / "checkpoints").glob("best-*.ckpt")
    tested = train(compose_config([*common, "train=false", f"ckpt_path={best}"], run_dir=tmp_path / "b"))
    assert tested["test/acc"] == trained["test/acc"] and tested["test/loss"] == trained["test/loss"]


# -- nothing in the code loads unsafely ---------------------------------------------------------------

SCANNED = [
    REPO / "train.py",
    REPO / "sweep.py",
    REPO / "compare.py",
    REPO / "src",
    REPO / "benchmarks",
    REPO / "scripts",
]
# Where pickle may be used, and why that is safe there.
PICKLE_ALLOWED = {
    "src/optlab/safe_load.py": "the allow-listed unpickler itself",
    "src/optlab/distributed/strategy.py": "objects sent between the ranks of one job (our own processes)",
    "benchmarks/memory_options.py": "writes CIFAR-10's python-format files of random pixels; reads them with the safe loader",
}


def _python_files():
    for root in SCANNED:
        yield from ([root] if root.is_file() else sorted(root.rglob("*.py")) if root.is_dir() else [])


def _call_name(node: ast.Call) -> str:
    func, parts = node.func, []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    found = [k.value for k in node.keywords if k.arg == name]
    return found[0].value if found and isinstance(found[0], ast.Constant) else ("<absent>" if not found else "<expr>")


def unsafe_calls(source: str, rel: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name, where = _call_name(node), f"{rel}:{node.lineno}"
            last = name.rsplit(".", 1)[-1]
            if name == "torch.load" or last in ("load_state_dict_from_url", "get_state_dict"):
                if _keyword(node, "weights_only") is not True:
                    problems.append(f"{where}: {name}( without weights_only=True")
            if last in ("fit", "test", "validate", "predict") and any(k.arg == "ckpt_path" for k in node.keywords):
                if _keyword(node, "weights_only") is not True:
                    problems.append(f"{where}: {name}(ckpt_path=...) without weights_only=True")
            if name in (
                "eval",
                "exec",
                "os.system",
                "os.popen",
                "torch.hub.load",
                "marshal.loads",
                "yaml.unsafe_load",
                "yaml.full_load",
                "joblib.load",
                "shelve.open",
            ):
                problems.append(f"{where}: {name}(")
            if name == "yaml.load" and _keyword(node, "Loader") == "<absent>":
                problems.append(f"{where}: yaml.load( without a safe Loader")
            if name.startswith("pickle.") and rel not in PICKLE_ALLOWED:
                problems.append(f"{where}: {name}( outside {sorted(PICKLE_ALLOWED)}")
            if _keyword(node, "shell") not in ("<absent>", False):
                problems.append(f"{where}: {name}(shell=...)")
            if last == "load" and _keyword(node, "allow_pickle") is True:
                problems.append(f"{where}: {name}(allow_pickle=True)")
    return problems


def test_no_unsafe_loader_in_the_code():
    problems = [
        p for path in _python_files() for p in unsafe_calls(path.read_text(), path.relative_to(REPO).as_posix())
    ]
    assert not problems, "\n".join(problems)


def test_the_scan_catches_each_pattern():
    bad = "\n".join(
        [
            "torch.load(p)",
            "torch.load(p, weights_only=False)",
            "w.get_state_dict(progress=False)",
            "trainer.fit(m, ckpt_path=c)",
            "eval(s)",
            "subprocess.run(c, shell=True)",
            "pickle.loads(b)",
            "yaml.load(f)",
            "np.load(f, allow_pickle=True)",
            "os.system(c)",
        ]
    )
    assert len(unsafe_calls(bad, "src/x.py")) == 10
    good = "torch.load(p, weights_only=True)\ntrainer.fit(m, ckpt_path=c, weights_only=True)\nyaml.safe_load(f)"
    assert unsafe_calls(good, "src/x.py") == []
