"""Every run's picture (`callbacks.curves`): `curves.png` and `curves.html` (the same picture
inline, works offline) in the run dir, drawn when training ends from what the run logged, no
W&B needed: train and validation loss and accuracy against examples seen, the learning rate, and
the largest gradient-to-weight ratio when `callbacks.grad_monitor` is on.

`python train.py -m ...` also gets one overlay of every job's validation curves beside its summary
table (`overlay`, called by optlab.multirun). The points go to `curves.jsonl` as they come (one
row per logging step, per validation and per finished epoch; each with step, examples_seen and
seconds since this process started training), so a resumed run keeps the rows before its
checkpoint and a killed one leaves what it had. Rank 0 writes. compare.py reads its validation
rows (every `val/*` metric) as each run's learning curve, with `draw=false`.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from lightning.pytorch import Callback

from optlab import strict_json
from optlab.loggers.steps import logs_this_step, scalar_metrics

ROWS, PNG, HTML = "curves.jsonl", "curves.png", "curves.html"


class Curves(Callback):
    def __init__(self, dir: str, draw: bool = True):
        self.dir, self.draw = Path(dir), draw
        self._due = False
        self._start = time.perf_counter()

    def _write(self, trainer, pl_module, **values) -> None:
        if not trainer.is_global_zero:
            return
        row = {
            "step": trainer.global_step,
            "examples_seen": int(getattr(pl_module, "examples_seen", 0)),
            "seconds": round(time.perf_counter() - self._start, 4),
        }
        row.update({k: float(v) for k, v in values.items() if v is not None})
        with open(self.dir / ROWS, "a") as f:
            f.write(strict_json.dumps(row) + "\n")

    def _metric(self, trainer, name: str):
        return scalar_metrics(trainer.callback_metrics).get(name)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        if not trainer.is_global_zero:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / ROWS
        rows = read_rows(path) if trainer.ckpt_path else []  # a resume keeps what came before its checkpoint
        path.write_text("".join(strict_json.dumps(r) + "\n" for r in rows if r["step"] <= trainer.global_step))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._due = logs_this_step(trainer)  # asked before the step, as the progress bar does

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._due:
            return
        monitor = next((c for c in trainer.callbacks if hasattr(c, "last_stats")), None)
        ratio = (monitor.last_stats or {}).get("grad_to_weight/max") if monitor else None
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._write(
            trainer,
            pl_module,
            **{"train/loss_step": None if loss is None else float(loss), "lr": lr, "grad_to_weight/max": ratio},
        )

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            metrics = scalar_metrics(trainer.callback_metrics)
            self._write(trainer, pl_module, **{k: v for k, v in metrics.items() if k.startswith("val/")})

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:  # the epoch before's train metrics are logged by now
            self._write(trainer, pl_module, **{k: self._metric(trainer, k) for k in ("train/loss", "train/acc")})

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, **{k: self._metric(trainer, k) for k in ("train/loss", "train/acc")})
        if trainer.is_global_zero and self.draw:
            draw(read_rows(self.dir / ROWS), self.dir)


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: strict_json.number(v) for k, v in row.items()} for row in rows]  # "nan" back to nan


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(r["examples_seen"], r[key]) for r in rows if key in r]
    return [x for x, _ in points], [y for _, y in points]


def draw(rows: list[dict], out: Path) -> Path | None:
    """curves.png and curves.html from the rows; None when there is nothing to draw."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    panels = [
        (
            axes[0][0],
            "loss",
            [
                ("train/loss_step", "train (logged steps)", 0.35),
                ("train/loss", "train (epoch)", 1),
                ("val/loss", "validation", 1),
            ],
        ),
        (axes[0][1], "accuracy", [("train/acc", "train (epoch)", 1), ("val/acc", "validation", 1)]),
        (axes[1][0], "learning rate", [("lr", "lr (first param group)", 1)]),
        (axes[1][1], "largest ||grad|| / ||weight||", [("grad_to_weight/max", "grad_to_weight/max", 1)]),
    ]
    for ax, title, lines in panels:
        drawn = False
        for key, label, alpha in lines:
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, "-" if alpha < 1 else "-o", ms=3, alpha=alpha, label=label)
                drawn = True
        ax.set(title=title, xlabel="examples seen")
        if key == "grad_to_weight/max" and drawn:
            from matplotlib.ticker import NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5,
                0.5,
                "not logged" + (" (callbacks.grad_monitor off)" if "grad" in key else ""),
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
    fig.tight_layout()
    png = out / PNG
    fig.savefig(png, dpi=100)
    plt.close(fig)
    picture = base64.b64encode(png.read_bytes()).decode()  # inline: one file that opens offline
    (out / HTML).write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(out.name)}</title>"
        f"<h3>{html.escape(str(out))}</h3><img alt='curves' src='data:image/png;base64,{picture}'>"
    )
    return png


def overlay(runs: list[tuple[str, list[dict]]], path: Path) -> Path | None:
    """Validation loss and accuracy of several runs against examples seen, one line each."""
    runs = [(label, rows) for label, rows in runs if any("val/loss" in r for r in rows)]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in runs:
        for ax, key in zip(axes, ("val/loss", "val/acc")):
            ax.plot(*series(rows, key), "-o", ms=3, label=label)
    for ax, key in zip(axes, ("val/loss", "val/acc")):
        ax.set(title=key, xlabel="examples seen")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
