"""optlab.compare.stats on inputs with known answers: intervals that cover at the stated rate,
tests that find no winner between identical distributions and find one between separated ones,
Welch's test equal to scipy's, an exact permutation p, time-to-target on a hand-made curve."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from optlab.compare import stats
from optlab.compare.stats import NEVER, Interval, Reached, holm, mean_ci, permutation_p, time_to_target, verdict, welch


def coverage(n: int, sims: int = 600, plain: bool = False) -> float:
    rng, hits = np.random.default_rng(n), 0
    for i in range(sims):
        x = rng.normal(size=n)
        if plain:
            low, high = np.quantile(rng.choice(x, (2000, n)).mean(axis=1), [0.025, 0.975])
        else:
            ci = mean_ci(x, resamples=2000, seed=i)
            low, high = ci.low, ci.high
        hits += low <= 0.0 <= high
    return hits / sims


def test_the_interval_covers_the_true_mean_at_about_the_stated_rate():
    at5, at10 = coverage(5), coverage(10)
    assert 0.87 <= at5 <= 0.96 and 0.92 <= at10 <= 0.98, (at5, at10)
    assert at5 >= coverage(5, plain=True) + 0.03  # the plain percentile bootstrap is too narrow


def test_an_interval_states_its_level_and_seeds():
    ci = mean_ci([0.91, 0.93, 0.92, 0.95, 0.94])
    assert ci.low < ci.mean < ci.high and ci.mean == pytest.approx(0.93) and (ci.level, ci.n) == (0.95, 5)
    assert str(ci).endswith("(95% CI, n=5)")
    assert mean_ci([0.5]) == Interval(0.5, 0.5, 0.5, 0.95, 1)  # one seed: no spread claimed
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.9, float("nan")])


def test_welch_equals_scipy():
    a, b = [0.91, 0.93, 0.92, 0.95, 0.94], [0.90, 0.89, 0.93, 0.88]
    ours, ref = welch(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.difference == pytest.approx(np.mean(a) - np.mean(b)) and (ours.n_a, ours.n_b) == (5, 4)


def test_permutation_p_is_exact_for_small_samples():
    # 3 vs 3 fully separated: 2 of the 20 splits are as extreme (this one and its mirror).
    assert permutation_p([4, 5, 6], [1, 2, 3]).p == pytest.approx(2 / 20)
    assert permutation_p([1, 2, 3], [1, 2, 3]).p == 1.0


@pytest.mark.parametrize("test", [welch, permutation_p])
def test_identical_distributions_rarely_name_a_winner(test):
    rng = np.random.default_rng(0)
    wins = sum("better" in verdict(test(rng.normal(size=5), rng.normal(size=5)), alpha=0.01) for _ in range(400))
    assert wins / 400 <= 0.03  # about alpha; 0 with the permutation test (its least p at 5 vs 5 is 2/252)


@pytest.mark.parametrize("test", [welch, permutation_p])
def test_well_separated_candidates_have_a_winner(test):
    rng = np.random.default_rng(1)
    a, b = 0.95 + 0.005 * rng.normal(size=5), 0.90 + 0.005 * rng.normal(size=5)
    assert verdict(test(a, b), alpha=0.01, names=("adamw", "sgd")).startswith("adamw better")
    assert verdict(test(b, a), alpha=0.01, names=("sgd", "adamw")).startswith("adamw better")
    assert verdict(test(a, b), alpha=0.01, higher_is_better=False, names=("a", "b")).startswith("b better")  # a loss


def test_time_to_target_is_the_first_evaluation_at_or_past_it():
    curve = [(64, 1, 0.5, 0.40), (640, 10, 2.0, 0.96), (1280, 20, 4.0, 0.97), (1920, 30, 6.0, 0.95)]
    assert time_to_target(curve, 0.97) == Reached(1280, 20, 4.0)
    assert time_to_target(curve, 0.99) == NEVER and math.isinf(NEVER.seconds)
    assert time_to_target([(64, 1, 0.5, 2.0), (128, 2, 1.0, 0.7)], 0.8, higher_is_better=False) == Reached(128, 2, 1.0)
    assert time_to_target([(64, 1, 0.5, float("nan")), (128, 2, 1.0, 0.99)], 0.9) == Reached(128, 2, 1.0)


def test_permutation_p_samples_splits_when_there_are_too_many():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=12), rng.normal(size=12) + 0.5  # 2.7 million splits: 2000 drawn
    sampled = permutation_p(a, b, resamples=2000)
    assert 1 / 2001 <= sampled.p <= 1 and sampled.p == pytest.approx(welch(a, b).p, abs=0.05)


def test_performance_profile_and_score_on_a_hand_made_table():
    from optlab.compare.stats import performance_profile, profile_score

    times = {
        "adamw": {"digits": 10.0, "cifar": 20.0},
        "sgd": {"digits": 20.0, "cifar": 10.0},
        "lion": {"digits": 10.0, "cifar": math.inf},
    }  # lion never reached the target on cifar
    assert performance_profile(times, [1.0, 1.5, 2.0]) == {
        "adamw": [0.5, 0.5, 1.0],
        "sgd": [0.5, 0.5, 1.0],
        "lion": [0.5, 0.5, 0.5],
    }
    # adamw: ratio 1 on one task, 2 on the other: (3 + 2) / (2 tasks * 3) over tau in [1, 4].
    assert profile_score(times) == pytest.approx({"adamw": 5 / 6, "sgd": 5 / 6, "lion": 0.5})


def test_holm_adjusts_a_family_of_p_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3x, then max(2x, previous)
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.004]) == [0.004]


def test_the_smallest_p_is_the_permutation_p_when_every_seed_of_one_beats_every_seed_of_the_other():
    for n_a, n_b in ((3, 3), (5, 5), (6, 6), (3, 4)):
        low, high = list(range(n_a)), list(range(100, 100 + n_b))
        assert stats.permutation_p(low, high).p == pytest.approx(stats.smallest_p(n_a, n_b))
    assert stats.smallest_p(5, 5) == pytest.approx(2 / 252) and stats.smallest_p(3, 4) == pytest.approx(1 / 35)


def test_the_protocol_says_when_no_winner_can_be_declared():
    assert stats.why_no_winner_is_possible(5, 1, 0.01, "permutation", "holm") is None  # 0.0079 < 0.01
    many = stats.why_no_winner_is_possible(5, 15, 0.01, "permutation", "holm")
    assert "0.00794 x 15 pairs (Holm) = 0.119" in many and "7 seeds would make one possible" in many  # 30/3432
    assert "pairs=<baseline>" in many
    assert "5 seeds would make one possible" in stats.why_no_winner_is_possible(3, 1, 0.01, "permutation", "holm")
    assert stats.why_no_winner_is_possible(5, 15, 0.01, "permutation", "none") is None  # per pair: 0.0079
    assert stats.why_no_winner_is_possible(5, 15, 0.01, "welch", "holm") is None  # no floor on Welch's p
