"""Every JSON file a run writes is valid JSON, also after the run went non-finite (issue 18):
nan/inf are written as the strings "nan", "inf", "-inf" (optlab.strict_json) and read back as
floats by optlab's readers. docs/reliability.md, "JSON files".
"""

import ast
import json
import math

import pytest

from conftest import REPO
from optlab.callbacks.curves import ROWS, read_rows
from optlab.launch.job import read_outcome, write_outcome
from optlab.run import compose_config, train


def strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as JSON does."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A run whose loss goes nan (lr 1e20: inf within a step or two), one short epoch."""
    base = tmp_path_factory.mktemp("diverged")
    overrides = [
        f"paths.log_dir={base / 'logs'}",
        "optimizer.lr=1e20",
        "logger=none",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "test=false",
    ]
    metrics = train(compose_config(overrides, run_dir=base / "run"))
    return base / "run", metrics


def test_metrics_json_is_strict_after_a_nan_run(diverged):
    run_dir, metrics = diverged
    assert math.isnan(metrics["train/loss"])  # the run did go non-finite
    written = strict((run_dir / "metrics.json").read_text())
    assert written["train/loss"] == "nan"
    assert written["examples_seen"] == metrics["examples_seen"]  # finite values as they were


def test_curves_rows_are_strict_and_read_back_as_numbers(diverged):
    run_dir, _ = diverged
    rows = [strict(line) for line in (run_dir / ROWS).read_text().splitlines()]
    assert any(row.get("train/loss_step") == "nan" for row in rows)
    assert any(math.isnan(row.get("train/loss_step", 0.0)) for row in read_rows(run_dir / ROWS))


def test_outcome_json_is_strict(tmp_path):
    write_outcome(
        tmp_path, {"status": "ok", "reason": None, "metrics": {"a": math.nan, "b": -math.inf}, "x": [math.inf]}
    )
    written = strict((tmp_path / "outcome.json").read_text())
    assert written["metrics"] == {"a": "nan", "b": "-inf"} and written["x"] == ["inf"]
    back = read_outcome(tmp_path)["metrics"]
    assert math.isnan(back["a"]) and back["b"] == -math.inf


def test_no_json_is_written_but_through_strict_json():
    """Python's json.dump(s) writes a bare NaN: every call in src/ goes through optlab.strict_json."""
    found = []
    for path in sorted((REPO / "src" / "optlab").rglob("*.py")):
        if path.name == "strict_json.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("dump", "dumps")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "json"
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, f"use optlab.strict_json.dumps instead of json.dump(s) at: {', '.join(found)}"
