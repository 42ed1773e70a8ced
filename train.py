"""Train a model as configured in conf/ (Hydra). Returns the optimized metric for sweeps.

To run:
    python train.py                                   # ResNet on digits, W&B offline
    python train.py optimizer=adamw strategy=ddp trainer.devices=2
    python train.py -m optimizer.lr=1e-4,1e-3         # one job per value
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optlab.cli import exit_on_config_error, preflight
from optlab.run import optimized_metric, run_job
from optlab.rundirs import pin_sweep_id


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with exit_on_config_error():
        return optimized_metric(cfg, run_job(cfg))


if __name__ == "__main__":
    preflight(sys.argv[1:], Path(__file__).resolve().parent / "conf")
    if "-m" in sys.argv or "--multirun" in sys.argv:
        pin_sweep_id()
    main()
