"""Train a model as configured in conf/ (Hydra). Returns the optimized metric for sweeps.

To run:
    python train.py                                   # ResNet on digits, W&B offline
    python train.py optimizer=adamw strategy=ddp trainer.devices=2
    python train.py -m optimizer.lr=1e-4,1e-3         # one job per value
"""

from optlab.entry import train

if __name__ == "__main__":
    train()
