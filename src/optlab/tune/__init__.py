"""`tune=lr_find` / `tune=batch_size` (conf/tune/): Lightning's Tuner on the configured run, in place of
training. Each writes its result to the run dir and prints the override to train with.

Lightning's Tuner runs in one process, so a multi-process run is refused before anything starts
(validate.check_tune). The Tuner swaps the run's callbacks and loggers for its own while it runs.
"""

from pathlib import Path

from lightning.pytorch.tuner import Tuner

from optlab import strict_json


def lr_find(
    trainer,
    model,
    datamodule,
    run_dir: str,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_training: int = 100,
    early_stop_threshold: float | None = 4.0,
) -> dict:
    """The LR range test; {"lr": suggestion} (None when the loss curve gives none)."""
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        early_stop_threshold=early_stop_threshold,
        update_attr=False,
    )
    suggestion = finder.suggestion() if finder is not None else None
    if trainer.is_global_zero and finder is not None:
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        results = {"lr": finder.results["lr"], "loss": finder.results["loss"], "suggestion": suggestion}
        (out / "lr_find.json").write_text(strict_json.dumps(results))
        import matplotlib

        matplotlib.use("Agg")
        figure = finder.plot(suggest=suggestion is not None)
        figure.savefig(out / "lr_find.png", dpi=100)
        said = f"optimizer.lr={suggestion:.3g}" if suggestion else "no suggestion (the loss never fell steadily)"
        print(f"lr_find: {said}  (curve: {out / 'lr_find.png'})")
    return {"lr": suggestion}


def batch_size(
    trainer, model, datamodule, run_dir: str, init_val: int = 32, max_trials: int = 8, steps_per_trial: int = 3
) -> dict:
    """The largest data.batch_size that fits (powers of 2 from init_val); {"batch_size": n}."""
    largest = Tuner(trainer).scale_batch_size(
        model,
        datamodule=datamodule,
        mode="power",
        init_val=init_val,
        max_trials=max_trials,
        steps_per_trial=steps_per_trial,
    )
    examples = len(getattr(datamodule, "train_set", None) or [])
    whole = bool(examples) and largest >= examples  # Lightning stops there: a batch cannot hold more
    if whole:
        largest = examples
    if trainer.is_global_zero:
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "batch_size.json").write_text(strict_json.dumps({"batch_size": largest, "whole_training_set": whole}))
        why = "the whole training set fits in one batch" if whole else f"the largest of the {max_trials} sizes tried"
        print(f"batch_size: data.batch_size={largest}  ({why})")
    return {"batch_size": largest}
