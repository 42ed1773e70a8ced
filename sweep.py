"""Hyperparameter search with Optuna: a study that resumes, prunes, survives failed trials and
scales out over workers sharing its storage. Configured like training (conf/sweep.yaml).

To run:
    python sweep.py                                    # default space (lr, batch size, weight decay), 20 trials
    python sweep.py sweep=lr_wd n_trials=30 optimizer=lion
    python sweep.py sweep/sampler=random sweep/pruner=hyperband
    python sweep.py report=only                        # top trials, re-runs with fresh seeds, plots
Run the same command again to resume; run it on N machines (shared storage) to scale out.
See docs/sweeps.md.
"""

from optlab.entry import sweep

if __name__ == "__main__":
    sweep()
