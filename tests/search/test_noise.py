"""search.engine.noise: McNemar's exact test, the tied band of a front, Kendall's tau with a bootstrap interval.

Every per-image vector is constructed so that the right answer is known by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from search import McNemar, ScoredSchedule, mcnemar, rank_agreement, tied_band


def flags(both: int = 0, only_first: int = 0, only_second: int = 0, neither: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two models' per-image results with the given cells of the 2x2 table, images shuffled."""
    a = np.array([True] * both + [True] * only_first + [False] * only_second + [False] * neither)
    b = np.array([True] * both + [False] * only_first + [True] * only_second + [False] * neither)
    order = np.random.default_rng(both + 7 * only_first + 13 * only_second).permutation(a.size)
    return a[order], b[order]


def test_mcnemar_exact_p_values() -> None:
    a, b = flags(both=50, only_first=10, neither=40)
    r = mcnemar(a, b)
    assert (r.only_a, r.only_b, r.images, r.discordant) == (10, 0, 100, 10)
    assert r.p_value == pytest.approx(2 / 2**10)  # both tails of Binomial(10, 1/2): 0 or 10 successes
    assert r.difference == pytest.approx(0.10)
    # 7 against 3: P(X <= 3) + P(X >= 7) = 2 (1 + 10 + 45 + 120) / 1024
    assert mcnemar(*flags(both=5, only_first=7, only_second=3, neither=5)).p_value == pytest.approx(352 / 1024)


def test_mcnemar_ignores_concordant_images_and_is_symmetric() -> None:
    a, b = flags(both=20, only_first=7, only_second=3)
    a2, b2 = flags(both=2000, only_first=7, only_second=3, neither=3000)
    assert mcnemar(a, b).p_value == mcnemar(a2, b2).p_value == mcnemar(b, a).p_value
    assert (mcnemar(b, a).only_a, mcnemar(b, a).only_b) == (3, 7)
    assert mcnemar(*flags(both=30, neither=70)) == McNemar(0, 0, 100, 1.0)  # no discordant image: nothing to test


def test_pairing_separates_what_two_standard_errors_cannot() -> None:
    # 1,000 images, 40.0 % against 38.0 %: 2 points apart, less than two unpaired standard errors
    # of a difference (2 x 2.18 points) -- but the 20 images that differ all go one way.
    from deeproots import accuracy_se

    a, b = flags(both=380, only_first=20, neither=600)
    se_diff = math.hypot(accuracy_se(a.mean(), a.size), accuracy_se(b.mean(), b.size))
    assert a.mean() - b.mean() < 2 * se_diff
    assert mcnemar(a, b).p_value < 1e-5


def test_mcnemar_refuses_different_images() -> None:
    with pytest.raises(ValueError, match="the same images"):
        mcnemar(np.ones(10, bool), np.ones(11, bool))
    with pytest.raises(ValueError, match="no images"):
        mcnemar(np.ones(0, bool), np.ones(0, bool))
    with pytest.raises(ValueError, match="booleans"):
        mcnemar([0, 1, 2], [0, 1, 1])


def _band_case() -> tuple[list[ScoredSchedule], list[ScoredSchedule]]:
    """A front of two and four others on 100 images; which ones are tied is known by hand."""
    rng = np.random.default_rng(0)
    base = rng.random(100) < 0.6  # F1's results
    f1 = base.copy()

    def flip(src: np.ndarray, lose: int = 0, gain: int = 0) -> np.ndarray:
        out = src.copy()
        right, wrong = np.flatnonzero(src), np.flatnonzero(~src)
        out[right[:lose]] = False
        out[wrong[:gain]] = True
        return out

    f2 = flip(f1, lose=10)  # 10 points worse than F1, and cheaper: both on the front
    front = [ScoredSchedule("F1", {"flops": 200, "params": 20}, f1), ScoredSchedule("F2", {"flops": 100, "params": 10}, f2)]
    others = [
        # cheaper than F1 in both costs; 2 images F1 gets that S1 misses: p = 0.5 -> tied with F1
        ScoredSchedule("S1", {"flops": 150, "params": 15}, flip(f1, lose=2)),
        # cheapest of all but 20 images worse than F2, never better: p = 2 / 2**20 -> tied with nothing
        ScoredSchedule("S2", {"flops": 90, "params": 9}, flip(f2, lose=20)),
        # as accurate as F1 but dearer in FLOPs: F1 is cheaper somewhere, so never "tied" (it is dominated)
        ScoredSchedule("S3", {"flops": 250, "params": 15}, f1.copy()),
        # more parameters than F2 (so only F1 counts); 7 images lost and 3 won against F1: p = 352/1024
        ScoredSchedule("S4", {"flops": 100, "params": 12}, flip(f1, lose=7, gain=3)),
    ]
    return front, others


def test_tied_band_on_constructed_results() -> None:
    front, others = _band_case()
    band = tied_band(front, others)
    assert band.members == ("S1", "S4")  # S1 58 %, S4 56 %: best first
    assert [(t.schedule_id, t.front_id) for t in band.ties] == [("S1", "F1"), ("S4", "F1")]
    assert band.tied_with("S1")[0].test.p_value == pytest.approx(0.5)
    assert band.tied_with("S4")[0].test.p_value == pytest.approx(352 / 1024)
    assert band.tied_with("S2") == [] and band.tied_with("S3") == []
    assert band.front == ("F1", "F2")
    assert band.schedules() == ["F1", "S1", "S4", "F2"]  # what a confirmation retrains, best first
    assert band.schedules(limit=2) == ["F1", "S1"]
    assert band.accuracy["F1"] - band.accuracy["S4"] == pytest.approx(0.04)


def test_tie_needs_p_at_least_alpha() -> None:
    front, others = _band_case()
    p_s4 = 352 / 1024
    assert "S4" in tied_band(front, others, alpha=p_s4).members  # p == alpha: tied
    assert "S4" not in tied_band(front, others, alpha=p_s4 + 1e-9).members
    assert tied_band(front, others, alpha=0.51).members == ()
    assert set(tied_band(front, others, alpha=2e-6).members) == {"S1", "S4"}
    assert set(tied_band(front, others, alpha=1e-6).members) == {"S1", "S2", "S4"}  # S2 against F2: p = 2 / 2**20


def test_tied_band_refuses_bad_input() -> None:
    front, others = _band_case()
    with pytest.raises(ValueError, match="alpha"):
        tied_band(front, others, alpha=0.0)
    with pytest.raises(ValueError, match="different costs"):
        tied_band(front, [ScoredSchedule("X", {"flops": 1}, np.ones(100, bool))])
    with pytest.raises(ValueError, match="the same images"):
        tied_band(front, [ScoredSchedule("X", {"flops": 1, "params": 1}, np.ones(99, bool))])
    assert tied_band(front, front).members == ()  # front members are never in their own band


def test_kendall_tau_known_values() -> None:
    x = [0.30, 0.32, 0.34, 0.36, 0.38]
    y = [0.30, 0.34, 0.32, 0.38, 0.36]  # two of ten pairs swapped: tau = (8 - 2) / 10
    r = rank_agreement(x, y)
    assert r.tau == pytest.approx(0.6) and r.schedules == 5
    assert r.low <= r.tau <= r.high and r.confidence == 0.95
    assert rank_agreement(x, x).tau == pytest.approx(1.0) and rank_agreement(x, x[::-1]).tau == pytest.approx(-1.0)
    assert (rank_agreement(x, x).low, rank_agreement(x, x).high) == pytest.approx((1.0, 1.0))
    assert rank_agreement(x, x, y).tau == pytest.approx((1.0 + 0.6 + 0.6) / 3)  # the mean over pairs
    assert math.isnan(rank_agreement(x, x, y).p_value)
    assert rank_agreement(x, y) == rank_agreement(x, y)  # seeded: reproducible


def test_bootstrap_interval_covers_zero_for_unrelated_and_not_for_related_orders() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(30)
    unrelated = rank_agreement(truth, rng.random(30))
    assert unrelated.low < 0 < unrelated.high
    related = rank_agreement(truth, truth + rng.normal(0, 0.05, 30))
    assert related.low > 0.4
    assert related.resamples == 2000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0.1, 0.2, 0.3],), "at least two"),
        (([0.1, 0.2, 0.3], [0.1, 0.2]), "one accuracy per schedule"),
        (([0.1, 0.2], [0.1, 0.2]), "at least 3"),
        (([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]), "same accuracy"),
        (([0.1, 0.2, math.nan], [0.1, 0.2, 0.3]), "finite"),
    ],
)
def test_rank_agreement_refuses_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rank_agreement(*args)
