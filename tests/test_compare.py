"""compare.py: candidates, tasks and protocol keys checked up front; the report on results with
known answers (a clear winner, two equal candidates, time-to-target); slow: the protocol end to end
on digits with a failing candidate, killed mid-way and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optlab.callbacks.curves import ROWS
from optlab.compare import config, protocol
from optlab.compare.curve import FIT, read_curve
from optlab.launch.job import OUTCOME
from optlab.run import CONFIG_DIR, compose_config
from optlab.validate import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "sweep.threads=1",
    "model.net.widths=[8,16]",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
]


def compare_cfg(tmp_path, *overrides):
    return compose_config([f"root={tmp_path}", *overrides], run_dir=tmp_path / "cmd", config_name="compare")


def test_candidates_are_override_sets_with_names():
    found = config.candidates_of(
        [
            "sgd",
            {"optimizer": "adamw", "scheduler": "none"},
            {"name": "big", "data.batch_size": 256, "optimizer.lr": 0.4, "space": {}},
        ]
    )
    assert [(c.name, c.overrides, c.space) for c in found] == [
        ("sgd", ["optimizer=sgd"], None),
        ("adamw,scheduler=none", ["optimizer=adamw", "scheduler=none"], None),
        ("big", ["data.batch_size=256", "optimizer.lr=0.4"], {}),
    ]
    with pytest.raises(ConfigError, match=r"candidates\[0\] and candidates\[1\] are both named 'sgd'"):
        config.candidates_of(["sgd", {"optimizer": "sgd"}])
    with pytest.raises(ConfigError, match=r"candidates\[1\]=3 is invalid"):
        config.candidates_of(["sgd", 3])
    with pytest.raises(ConfigError, match=r"candidates=\[\] is invalid"):
        config.candidates_of([])


def test_default_search_space_is_three_decades_around_the_optimizer_defaults():
    from omegaconf import OmegaConf

    space = config.default_space(OmegaConf.create({"lr": 1e-3, "weight_decay": 0.0}))
    assert space["optimizer.lr"]["low"] == pytest.approx(1e-3 / 10**1.5)
    assert space["optimizer.lr"]["high"] / space["optimizer.lr"]["low"] == pytest.approx(1000)
    assert space["optimizer.weight_decay"] == {"low": 1e-5, "high": 1e-2, "log": True}
    own = {"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    assert config.default_space(OmegaConf.create({"lr": 1.0, "search_space": own})) == own


def test_bad_protocol_keys_fail_with_the_key_named(tmp_path):
    cases = {
        "tasks=[nosuch]": r"tasks: 'nosuch' is not a task; choose from .*digits",
        "tune.trials=-1": r"tune.trials=-1 is invalid",
        "eval.seeds=0": r"eval.seeds=0 is invalid",
        "alpha=2": r"alpha=2 is invalid",
        "test=ttest": r"test='ttest' is invalid",
        "target={metric: val/acc}": r"target.value=None is invalid",
        "run_defaults=[csv]": r"run_defaults=\['csv'\] is invalid",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            config.protocol(compare_cfg(tmp_path, override), [], [CONFIG_DIR])


def test_the_command_line_splits_into_protocol_and_training_overrides():
    own, training = config.split_command_line(
        [
            "--config-dir",
            "/x",
            "compare=optimizers",
            "candidates=[sgd]",
            "tune.trials=3",
            "sweep/sampler=random",
            "sweep.threads=2",
            "hydra.run.dir=/y",
            "name=n",
            "data.root=/data",
            "+trainer.limit_val_batches=1",
            "~callbacks.progress_bar",
            "optimizer.lr=0.1",
            "storage=sqlite:///s.db",
        ],
        CONFIG_DIR,
    )
    assert own == [
        "--config-dir",
        "/x",
        "compare=optimizers",
        "candidates=[sgd]",
        "tune.trials=3",
        "sweep/sampler=random",
        "sweep.threads=2",
        "hydra.run.dir=/y",
        "name=n",
        "storage=sqlite:///s.db",
    ]
    assert training == [
        "data.root=/data",
        "+trainer.limit_val_batches=1",
        "~callbacks.progress_bar",
        "optimizer.lr=0.1",
    ]


def test_later_overrides_win_task_then_command_line_then_candidate():
    assert protocol.dedupe(
        ["logger=csv", "data=digits", "trainer.max_epochs=10", "logger=none", "trainer.max_epochs=2"]
    ) == ["data=digits", "logger=none", "trainer.max_epochs=2"]


def test_a_resume_with_other_settings_is_refused(tmp_path):
    def resume(*overrides):
        protocol.check_resume(
            config.protocol(compare_cfg(tmp_path, "candidates=[sgd,adamw]", *overrides), [], [CONFIG_DIR])
        )

    resume("eval.seeds=2")
    resume("eval.seeds=2")  # the same: fine
    with pytest.raises(ConfigError, match="was run with other settings \\(eval_seeds differ\\)"):
        resume("eval.seeds=1")
    with pytest.raises(ConfigError, match="was run with other settings \\(trials differ\\)"):
        resume("eval.seeds=2", "tune.trials=3")
    resume("eval.seeds=2", "alpha=0.05", "test=welch", "pairs=sgd")  # they change the report, not the runs
    stored = protocol.load_protocol(tmp_path, "sgd-vs-adamw")
    assert stored.alpha == 0.05 and stored.tested_pairs() == [("sgd", "adamw")]
    resume("eval.seeds=4")  # more seeds for a claim: the first two stay
    assert protocol.load_protocol(tmp_path, "sgd-vs-adamw").eval_seeds == [1000, 1001, 1002, 1003]
    (tmp_path / "moved").mkdir()  # a comparison folder copied elsewhere (a cluster's results on a laptop)
    (tmp_path / "sgd-vs-adamw").rename(tmp_path / "moved" / "sgd-vs-adamw")
    assert protocol.load_protocol(tmp_path / "moved", "sgd-vs-adamw").dir == tmp_path / "moved" / "sgd-vs-adamw"
    moved = config.protocol(compare_cfg(tmp_path / "moved", "candidates=[sgd,adamw]", "eval.seeds=4"), [], [CONFIG_DIR])
    protocol.check_resume(moved)  # where it lives is not one of its settings


def test_repeated_studies_get_their_own_sampler_seed_storage_and_folders(tmp_path):
    cfg = compare_cfg(tmp_path, "candidates=[sgd,adamw]", "tune.studies=2", "tune.seed=7", "name=rep")
    p = config.protocol(cfg, [], [CONFIG_DIR])
    cells = protocol.plan(protocol._stored_cfg(cfg, p), p, [], check=False)
    got = [(c.candidate.name, c.study, c.settings.sampler["seed"], c.settings.study_name) for c in cells]
    assert got == [
        ("sgd", 0, 7, "rep.digits.sgd.s0"),
        ("sgd", 1, 8, "rep.digits.sgd.s1"),
        ("adamw", 0, 7, "rep.digits.adamw.s0"),
        ("adamw", 1, 8, "rep.digits.adamw.s1"),
    ]
    assert {c.settings.storage for c in cells} == {f"sqlite:///{tmp_path}/rep/tune.db"}
    assert cells[1].settings.study_dir == tmp_path / "rep" / "tune" / "digits" / "sgd" / "s1"
    assert all(c.settings.space.params and c.tuned for c in cells)


def test_a_typo_in_a_candidate_fails_before_anything_runs(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "compare.py"),
            f"root={tmp_path}",
            "candidates=[sgd,{optimizer: adamw, optimizer.betaz: 0.9}]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "WANDB_SILENT": "true"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: candidate 'adamw,optimizer.betaz=0.9' on task digits:"), (
        lines
    )
    assert "betaz" in lines[0]
    assert not any(tmp_path.glob("*/tune.db")), "nothing may start before every candidate is checked"


def test_the_cifar10_task_plans_on_real_format_files_and_names_a_missing_root(tmp_path):
    from test_cifar10 import write_cifar10

    def plan(*training):
        cfg = compare_cfg(tmp_path, "tasks=[cifar10_resnet18]", "candidates=[sgd]")
        p = config.protocol(cfg, ["data.num_workers=0", *training], [CONFIG_DIR])
        return protocol.plan(protocol._stored_cfg(cfg, p), p, [])

    with pytest.raises(ConfigError, match=r"candidate 'sgd' on task cifar10_resnet18: data.root=.* has no cifar-10"):
        plan(f"data.root={tmp_path / 'nothing'}")
    write_cifar10(tmp_path / "cifar")
    (cell,) = plan(f"data.root={tmp_path / 'cifar'}", "data.verify_md5=false")
    assert "model.net.blocks=[2,2,2,2]" in cell.settings.training_overrides  # ResNet-18


def _fake_run(run_dir: Path, final: float, reach_at: int | None, examples_per_eval: int = 1000) -> None:
    """A finished re-run: its outcome, a 5-point curve (target 0.9 first reached at eval `reach_at`), its fit."""
    run_dir.mkdir(parents=True)
    rows = []
    for i in range(1, 6):
        acc = 0.95 if reach_at is not None and i >= reach_at else 0.5
        rows.append(
            {
                "step": 10 * i,
                "examples_seen": examples_per_eval * i,
                "seconds": 1.0 * i,
                "val/acc": acc,
                "val/acc_best": acc,
            }
        )
    (run_dir / ROWS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / FIT).write_text(
        json.dumps({"fit_s": 5.0, "params": 100, "state_bytes": 800, "steps": 50, "examples_seen": 5000})
    )
    (run_dir / OUTCOME).write_text(
        json.dumps(
            {
                "status": "ok",
                "reason": None,
                "wall_s": 6.0,
                "metrics": {"val/acc_best": final, "test/acc": final - 0.01},
            }
        )
    )


def test_a_resume_reruns_what_failed_on_config_and_keeps_the_candidates_own_failures(tmp_path):
    _fake_run(tmp_path / "ok", 0.9, 2)
    assert protocol.finished(tmp_path / "ok")
    for status, done in (("error", True), ("crash", True), ("config", False)):
        run = tmp_path / status
        run.mkdir()
        (run / OUTCOME).write_text(json.dumps({"status": status, "reason": "x", "metrics": {}}))
        assert protocol.finished(run) is done, status
    assert not protocol.finished(tmp_path / "never-started")


def test_the_report_states_a_clear_winner_and_no_difference_between_equals(tmp_path):
    from optlab.compare.report import write_report

    cfg = compare_cfg(
        tmp_path,
        "name=known",
        "eval.seeds=6",
        "target={metric: val/acc, value: 0.9}",
        "candidates=[{name: a, optimizer: sgd, space: {}}, {name: b, optimizer: sgd, space: {}},"
        " {name: c, optimizer: adamw, space: {}}]",
    )
    p = config.protocol(cfg, [], [CONFIG_DIR])
    cells = protocol.plan(protocol._stored_cfg(cfg, p), p, [], check=False)
    equal = [0.80, 0.82, 0.84, 0.81, 0.83, 0.85]
    finals = {"a": equal, "b": equal[::-1], "c": [0.95, 0.96, 0.97, 0.95, 0.96, 0.97]}
    reach = {"a": 4, "b": None, "c": 2}
    for cell in cells:
        for seed, final in zip(p.eval_seeds, finals[cell.candidate.name]):
            _fake_run(protocol.eval_dir(p, cell, seed), final, reach[cell.candidate.name])
    report = write_report(p, cells)
    text = report.read_text()
    cells_of = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    pairs = {(c[0], c[1]): c for c in cells_of if len(c) == 7 and ("better" in c[6] or "no difference" in c[6])}
    assert pairs[("a", "b")][6].startswith("no difference shown")
    # exact permutation p = 2/924; Holm over the 3 pairs: 3 x 0.00216 (the smallest p of the family)
    assert pairs[("a", "c")][3:5] == ["0.00216", "0.00649"]
    assert pairs[("a", "c")][6] == "c better (p=0.00649 < 0.01)" and pairs[("b", "c")][6].startswith("c better")
    rows = {c[0]: c for c in cells_of if len(c) == 9}
    assert rows["c"][4] == "2000 [2000, 2000] (6/6)" and rows["a"][4] == "4000 [4000, 4000] (6/6)"
    assert rows["b"][4] == "never [never, never] (0/6)"
    assert rows["c"][8] == "8"  # 800 state bytes over 100 parameters
    for name in (
        "report.md",
        "report.html",
        "digits_curves_examples.png",
        "digits_curves_time.png",
        "digits_time_to_target.png",
    ):
        assert (p.dir / name).stat().st_size > 1000, name
    assert "data:image/png;base64," in (p.dir / "report.html").read_text()
    p.pairs = [["a", "c"]]  # one planned contrast (pairs=[[a, c]]): a family of one, nothing to adjust
    text = write_report(p, cells).read_text()
    tested = [c for c in (line.strip("| ").split(" | ") for line in text.splitlines()) if len(c) == 7 and c[0] != "A"]
    assert [c[:5] for c in tested if c[0] != "---"] == [["a", "c", "-0.1350", "0.00216", "0.00216"]]


def test_several_tasks_give_performance_profiles_and_scores(tmp_path):
    """a is fastest on digits (2 s vs 4 s) and never reaches synthetic's target; b reaches it:
    ratios a = [1, inf], b = [2, 1], so AlgoPerf's score (tau_max 4) is 3/6 for a and 5/6 for b."""
    from optlab.compare.report import write_report

    cfg = compare_cfg(
        tmp_path,
        "name=profiles",
        "eval.seeds=2",
        "tasks=[digits,synthetic]",
        "target={metric: val/acc, value: 0.9}",
        "candidates=[{name: a, optimizer: sgd, space: {}}, {name: b, optimizer: adamw, space: {}}]",
    )
    p = config.protocol(cfg, [], [CONFIG_DIR])
    cells = protocol.plan(protocol._stored_cfg(cfg, p), p, [], check=False)
    reach = {("digits", "a"): 2, ("digits", "b"): 4, ("synthetic", "a"): None, ("synthetic", "b"): 2}
    for cell in cells:
        for seed in p.eval_seeds:
            _fake_run(protocol.eval_dir(p, cell, seed), 0.9, reach[(cell.task.name, cell.candidate.name)])
    text = write_report(p, cells).read_text()
    scores = {
        c[0]: c
        for c in (
            line.strip("| ").split(" | ")
            for line in text.split("Performance profiles")[1].splitlines()
            if line.startswith("| ")
        )
        if c[0] in ("a", "b")
    }
    assert scores["a"] == ["a", "2", "never", "0.500"] and scores["b"] == ["b", "4", "2", "0.833"]
    assert (p.dir / "performance_profiles.png").stat().st_size > 1000


@pytest.mark.slow
def test_the_protocol_end_to_end_survives_a_kill_and_a_failing_candidate(tmp_path):
    """2 candidates + 1 that crashes (a 3-class head on 10-class digits), 2 trials, 2 seeds: killed
    during the re-runs, resumed; nothing finished re-runs, the failure is reported, plots exist."""
    args = [
        sys.executable,
        str(REPO / "compare.py"),
        f"root={tmp_path}",
        "name=e2e",
        "tune.trials=2",
        "eval.seeds=2",
        "eval.every=5",
        *TINY,
        "trainer.max_epochs=1",
        "candidates=[sgd,adamw,{name: broken, optimizer: sgd, model.net.num_classes: 3}]",
    ]
    env = {**os.environ, "WANDB_SILENT": "true"}
    first = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    evals = tmp_path / "e2e" / "eval"
    deadline = time.time() + 600
    while time.time() < deadline and not list(evals.glob(f"**/{OUTCOME}")):
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done = {p: p.stat().st_mtime for p in evals.glob(f"**/{OUTCOME}")}
    assert done
    # resumed by two workers at once: they share the re-runs left (each run once), and both report
    workers = [
        subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]
        assert "[trial" not in out, "tuning was finished before the kill: no trial may run again"
    for path, mtime in done.items():
        assert path.stat().st_mtime == mtime, f"{path} was run again"
    ran = [line.split(":")[0] for out in outputs for line in out.splitlines() if line.startswith("[compare] eval ")]
    assert ran and len(ran) == len(set(ran)), f"a re-run ran twice: {ran}"
    assert len(list(evals.glob("**/seed-*.killed-*"))) <= 1, "only the run killed with the first worker is put aside"
    report = (tmp_path / "e2e" / "report.md").read_text()
    assert "| broken | failed: no tuning trial completed (2x IndexError: Target" in report
    for name in ("sgd", "adamw"):
        runs = list((evals / "digits" / name / "s0").glob(f"seed-*/{OUTCOME}"))
        assert len(runs) == 2 and all(json.loads(r.read_text())["status"] == "ok" for r in runs)
        curve = read_curve(runs[0].parent)
        assert len(curve) >= 3, "eval.every=5 validates at steps 5, 10, 15 of a 19-step epoch"
        assert not (runs[0].parent / "curves.png").exists(), "the comparison draws its own pictures"
    for png in (
        "digits_curves_examples.png",
        "digits_curves_time.png",
        "digits_time_to_target.png",
        "digits_sensitivity.png",
    ):
        assert (tmp_path / "e2e" / png).stat().st_size > 1000, png
    redraw = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), f"root={tmp_path}", "name=e2e", "report=only"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert redraw.returncode == 0, redraw.stderr[-2000:]
    assert (tmp_path / "e2e" / "report.md").read_text().split("## Task")[1] == report.split("## Task")[1]


def test_a_re_run_lock_excludes_other_workers_and_dies_with_its_holder(tmp_path):
    from optlab.compare import workers

    run_dir = tmp_path / "eval" / "seed-1"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from optlab.compare import workers\n"
            f"with workers.holding(Path({str(run_dir)!r})) as mine:\n"
            "    print(mine, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        with workers.holding(run_dir) as mine:
            assert not mine, "another process holds it"
    finally:
        holder.kill()
        holder.wait()
    with workers.holding(run_dir) as mine:
        assert mine, "a killed holder's lock is free at once"


def test_the_power_law_fit_recovers_known_exponents():
    import numpy as np

    from optlab.compare import scaling

    rng = np.random.default_rng(0)
    n, d = np.meshgrid([1e3, 4e3, 16e3, 64e3], [500, 1000, 2000, 4000])
    n, d = np.repeat(n.ravel(), 3), np.repeat(d.ravel(), 3)
    loss = 0.3 + 40 * n**-0.5 + 20 * d**-0.35 + rng.normal(0, 0.002, n.shape)
    e, _a, alpha, _b, beta = scaling.fit(n, d, loss)
    assert alpha == pytest.approx(0.5, abs=0.05) and beta == pytest.approx(0.35, abs=0.05)
    assert e == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize(
    "pairs, message",
    [
        ("pairs=adamx", r"pairs='adamx' is invalid: not a candidate's name; choose all, none, one of 'sgd', 'adamw'"),
        ("pairs=[[sgd,adamx]]", r"pairs\[0\]=\['sgd', 'adamx'\] is invalid: 'adamx' is not a candidate's name"),
        ("pairs=[[sgd,sgd]]", r"pairs\[0\]=\['sgd', 'sgd'\] is invalid: a candidate against itself"),
        (
            "pairs=[sgd,adamw]",
            r"pairs=\['sgd', 'adamw'\] is invalid: all, a candidate's name \(a baseline\), or \[\[A, B\]",
        ),
    ],
)
def test_bad_pairs_fail_with_the_key_named(tmp_path, pairs, message):
    with pytest.raises(ConfigError, match=message):
        config.protocol(compare_cfg(tmp_path, "candidates=[sgd,adamw]", pairs), [], [CONFIG_DIR])


def test_an_analysis_must_name_a_function(tmp_path):
    with pytest.raises(ConfigError, match=r"analyses\[0\]=.* is invalid: a mapping with a _target_ function"):
        config.protocol(compare_cfg(tmp_path, "analyses=[{_target_: optlab.compare.nosuch}]"), [], [CONFIG_DIR])


SHIPPED = ["optimizers", "warmup_adam", "batch_lr_scaling", "scaling_law"]


@pytest.mark.slow
def test_every_shipped_comparison_runs_at_a_tiny_budget(tmp_path):
    """conf/compare/*.yaml end to end (tuning, re-runs, report) with 1 trial where a comparison tunes
    (0 where it does not), 1 seed, 3 steps a run (one epoch)."""
    assert sorted(p.stem for p in (CONFIG_DIR / "compare").glob("*.yaml")) == sorted(SHIPPED)
    tiny = [
        "eval.seeds=1",
        "+trainer.limit_test_batches=1",
        "sweep.process=inline",
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
    ]
    for name in SHIPPED:
        tunes = compose_config([f"compare={name}"], run_dir=tmp_path / "cmd", config_name="compare").tune.trials > 0
        own, training = config.split_command_line(
            [f"compare={name}", f"root={tmp_path}", *tiny, *(["tune.trials=1"] if tunes else [])], CONFIG_DIR
        )
        cfg = compose_config(own, run_dir=tmp_path / "cmd", config_name="compare")
        protocol.compare(cfg, training, [], [CONFIG_DIR])
        report = (tmp_path / name / "report.md").read_text()
        assert "failed" not in report, report
        p = protocol.load_protocol(tmp_path, name)
        outcomes = list((tmp_path / name / "eval").glob(f"**/{OUTCOME}"))
        assert len(outcomes) == len(p.candidates), name
        if name == "scaling_law":
            assert "Scaling law on synthetic" in report
