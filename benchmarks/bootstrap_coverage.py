"""How often does compare.py's 95% interval cover the true mean? A simulation with known answers.

Latest (2026-12-03 08:17 UTC, AMD EPYC, 2 logical CPUs): coverage of compare.py's 95% interval at 3
/ 5 / 10 seeds: normal(0, 1) 0.742 / 0.911 / 0.944, lognormal(0, 1) 0.644 / 0.806 / 0.854 (plain
percentile: 0.742 / 0.832 / 0.893, 0.644 / 0.707 / 0.813); see docs/benchmarks.md.

For 3, 5 and 10 seeds, draws --sims samples from a normal and from a skewed (lognormal, sigma 1)
distribution, builds the interval compare.py reports (optlab.compare.stats.mean_ci: the
expanded-percentile bootstrap) and the plain percentile bootstrap, and counts how often each
covers the true mean. Target: the stated level (0.95); the plain bootstrap is known to fall short
with few seeds, which is why compare.py widens it.

To run (about 2 minutes):
    python benchmarks/bootstrap_coverage.py
    python benchmarks/bootstrap_coverage.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/x.py` puts only benchmarks/ there
from benchmarks import _report  # noqa: E402
from optlab.compare.stats import mean_ci  # noqa: E402

DISTRIBUTIONS = {  # name -> (sampler, true mean)
    "normal(0, 1)": (lambda rng, n: rng.normal(0.0, 1.0, n), 0.0),
    "lognormal(0, 1)": (lambda rng, n: rng.lognormal(0.0, 1.0, n), math.exp(0.5)),
}


def plain_percentile(x: np.ndarray, level: float, resamples: int, rng) -> tuple[float, float]:
    means = rng.choice(x, size=(resamples, len(x))).mean(axis=1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples per interval")
    _report.add_output_args(parser)
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()
    rows, coverage = [], {}
    for name, (draw, truth) in DISTRIBUTIONS.items():
        for n in args.seeds:
            rng = np.random.default_rng(n)
            ours = plain = 0
            for sim in range(args.sims):
                x = draw(rng, n)
                ci = mean_ci(x, 0.95, resamples=args.resamples, seed=sim)
                ours += ci.low <= truth <= ci.high
                low, high = plain_percentile(x, 0.95, args.resamples, rng)
                plain += low <= truth <= high
            rows.append([name, n, f"{ours / args.sims:.3f}", f"{plain / args.sims:.3f}"])
            coverage.setdefault(name, []).append(rows[-1][2:])
            print(rows[-1], flush=True)
    text = _report.Table(
        ["data", "seeds", "coverage: compare.py (expanded percentile)", "plain percentile"], rows, align="lrrr"
    )
    headline = (
        f"coverage of compare.py's 95% interval at {' / '.join(map(str, args.seeds))} seeds: "
        + ", ".join(f"{name} {' / '.join(ours for ours, _ in c)}" for name, c in coverage.items())
        + " (plain percentile: "
        + ", ".join(" / ".join(plain for _, plain in c) for c in coverage.values())
        + ")"
    )
    body = (
        f"{args.sims} simulated comparisons per row, {args.resamples} bootstrap resamples per interval, "
        f"stated level 0.95; a row's coverage has a standard error of about "
        f"{math.sqrt(0.95 * 0.05 / args.sims):.3f}.\n\n{text}"
    )
    _report.publish(
        args,
        "Bootstrap coverage of compare.py's 95% interval",
        body,
        started,
        load_before,
        headline=headline,
        table=text,
    )


if __name__ == "__main__":
    main()
