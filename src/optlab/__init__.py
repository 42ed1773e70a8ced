"""optlab: a Lightning + Hydra template for studying how networks are trained."""

__version__ = "0.1.0"
