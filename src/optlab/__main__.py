"""`python -m optlab`: what to run."""

USAGE = """optlab: a Lightning + Hydra template for studying how networks are trained.

  optlab-train   [overrides]   train (python train.py in a clone): optimizer=adamw strategy=ddp ...
  optlab-train -m a=1,2        one job per value (Hydra multirun)
  optlab-sweep   [overrides]   an Optuna study (python sweep.py): n_trials=30 sweep/pruner=hyperband
  optlab-compare [overrides]   compare candidates (python compare.py): candidates=[sgd,adamw,lion]
  python -m optlab.landscape   optimizer trajectories on 2-D test functions

Every command takes --help (Hydra's) and --cfg job (print the composed config). Docs: README.md, docs/."""

if __name__ == "__main__":
    print(USAGE)
