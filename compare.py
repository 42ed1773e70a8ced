"""Which optimizer (schedule, strategy, batch size...) trains this network better, by how much,
and how sure: every candidate tuned with the same budget, its best configuration re-run with fresh
seeds, then intervals, tests at a stated level, time-to-target and plots. Configured like training
(conf/compare.yaml; named comparisons in conf/compare/, tasks in conf/task/).

To run:
    python compare.py candidates=[sgd,adamw,lion,muon]               # on digits, writes a report
    python compare.py compare=optimizers                             # a shipped study
    python compare.py 'candidates=[{optimizer: adamw}, {optimizer: adamw, scheduler: none}]'
    python compare.py report=only name=optimizers                    # redraw from storage
Run the same command again to resume (nothing finished re-runs). See docs/compare.md.
"""

from optlab.entry import compare

if __name__ == "__main__":
    compare()
