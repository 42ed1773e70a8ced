"""optlab installs like a package: a wheel carries its configs and entry points, and trains from
any directory with a fork's configs layered on top."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_package_and_the_configs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    configs = {
        "optlab.conf",
        *(".".join(("optlab", *d.relative_to(REPO).parts)) for d in (REPO / "conf").rglob("*") if d.is_dir()),
    }
    assert listed == found | configs, "pyproject's [tool.setuptools] packages must list each of src/optlab and conf/"


@pytest.mark.slow
def test_a_wheel_installed_outside_the_repo_trains_with_a_forks_configs(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    env_dir = tmp_path / "venv"
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "WANDB_SILENT": "true", "HOME": str(tmp_path)}  # no PYTHONPATH
    venv.create(env_dir, with_pip=True)  # ensurepip: offline
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
    )
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(next(wheels.glob("optlab-*.whl")))],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # then the dependencies, from this interpreter's site-packages (a path: not its .pth files, so not
    # an editable optlab of this checkout; after the install, or pip would call optlab installed)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "myconf" / "optimizer").mkdir(parents=True)
    (elsewhere / "myconf" / "optimizer" / "fast_sgd.yaml").write_text(
        "_target_: optlab.optim.SGD\n_partial_: true\nlr: 0.2\nmomentum: 0.9\n"
    )
    where = subprocess.run(
        [str(python), "-c", "import optlab.run as r; print(r.CONFIG_DIR)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert where.stdout.strip() == str(site / "optlab" / "conf"), where.stdout + where.stderr
    usage = subprocess.run([str(python), "-m", "optlab"], capture_output=True, text=True, env=env, check=False)
    assert "optlab-train" in usage.stdout and "optlab-compare" in usage.stdout
    run = subprocess.run(
        [
            str(env_dir / "bin" / "optlab-train"),
            "--config-dir",
            "myconf",
            "optimizer=fast_sgd",
            "trainer.max_epochs=1",
            "logger=csv",
            "model.net.widths=[8,16]",
            "paths.log_dir=logs",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (log,) = (elsewhere / "logs" / "train").glob("*/train.log")
    assert "test/acc" in log.read_text() and (log.parent / "metrics.json").is_file()
    assert "lr: 0.2" in (log.parent / ".hydra" / "config.yaml").read_text(), "the fork's optimizer config was used"
