"""Noise in a search's results: paired tests of two schedules, the tied band of a front, rank agreement.

A search scores every schedule once, on a finite validation split, after one training run. Two
schedules whose accuracies differ by less than the noise of that measurement are not told apart by
it, and a front picked on noise flatters its members (the winner's curse). Three tools:

* :func:`mcnemar` -- the exact two-sided McNemar test (McNemar 1947) of two models scored on the
  *same* images: under "equally accurate", the images on which exactly one of them is right fall
  to either side with probability 1/2, so the count on one side is Binomial(discordant, 1/2)
  (``scipy.stats.binomtest``). Pairing removes the images both get right or both get wrong, which
  is why it separates schedules an unpaired comparison of two accuracies cannot.
* :func:`tied_band` -- schedule ``s`` is *tied* with front member ``f`` when ``f`` is nowhere cheaper
  (every cost of ``f`` >= ``s``'s) and McNemar's test cannot tell their accuracies apart
  (p >= alpha, no multiplicity correction). Such an ``s`` is as good as ``f`` as far as the data can
  tell and costs no more: the band is what a confirmation at higher fidelity should retrain beside
  the front, and what a report should list next to it.
* :func:`rank_agreement` -- Kendall's tau-b (Kendall 1938; ``scipy.stats.kendalltau``) between two
  (or more) sets of accuracies of the same schedules -- two training seeds, or two fidelities --
  with a paired percentile-bootstrap interval over schedules (Efron & Tibshirani 1993, ch. 13).

Per-image results come from :func:`deeproots.evaluate_per_image` (bits stored with
:func:`deeproots.pack_correct`). Accuracies are fractions in [0, 1] throughout.

Example:
    >>> import numpy as np
    >>> from search.engine.noise import mcnemar
    >>> a = np.array([True] * 60 + [False] * 40)
    >>> b = np.array([True] * 50 + [False] * 50)
    >>> result = mcnemar(a, b)      # a is right on 10 images b gets wrong, never the other way
    >>> result.only_a, result.only_b, round(result.p_value, 4)
    (10, 0, 0.002)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["TIE_ALPHA", "McNemar", "mcnemar", "ScoredSchedule", "Tie", "TiedBand", "tied_band", "RankAgreement",
           "rank_agreement"]  # fmt: skip

#: Default significance level of the tie test (the space's ``confirm.alpha``).
TIE_ALPHA = 0.05


def _flags(correct: Any, what: str) -> np.ndarray:
    if hasattr(correct, "detach"):  # a torch tensor
        correct = correct.detach().to("cpu").numpy()
    arr = np.asarray(correct)
    if arr.ndim != 1:
        raise ValueError(f"{what}: per-image results must be one flag per image (1-D), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{what}: per-image results must be booleans (or 0/1)")
        arr = arr.astype(np.bool_)
    return arr


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of two models scored on the same images.

    Attributes:
        only_a: images model ``a`` got right and ``b`` wrong.
        only_b: images ``b`` got right and ``a`` wrong.
        images: images compared.
        p_value: exact two-sided p-value of "equally accurate"; 1.0 when no image is discordant.
    """

    only_a: int
    only_b: int
    images: int
    p_value: float

    @property
    def discordant(self) -> int:
        """Images on which exactly one of the two is right."""
        return self.only_a + self.only_b

    @property
    def difference(self) -> float:
        """Accuracy of ``a`` minus accuracy of ``b`` (a fraction: 0.01 = one point)."""
        return (self.only_a - self.only_b) / self.images


def mcnemar(a: Any, b: Any) -> McNemar:
    """Exact two-sided McNemar test (McNemar 1947) of two models on the same images.

    Under the hypothesis that both are equally accurate, each discordant image (one right, the
    other wrong) is ``a``'s with probability 1/2; the p-value is that of ``only_a`` successes in
    ``only_a + only_b`` trials of a fair binomial, two-sided (``scipy.stats.binomtest``).

    Args:
        a: per-image flags of the first model (bool array or tensor, 0/1 values), split order.
        b: the second model's, on the same images in the same order.

    Returns:
        The :class:`McNemar` result.

    Raises:
        ValueError: lengths differ, no images, or flags that are not booleans.
    """
    from scipy.stats import binomtest  # noqa: PLC0415

    x, y = _flags(a, "a"), _flags(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"per-image results of {x.size:,} and {y.size:,} images: a paired test needs the same images")
    if x.size == 0:
        raise ValueError("no images to compare")
    only_a = int(np.count_nonzero(x & ~y))
    only_b = int(np.count_nonzero(~x & y))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(only_a, only_b, int(x.size), min(1.0, p))


@dataclass(frozen=True)
class ScoredSchedule:
    """One schedule with its costs and which validation images it got right.

    Attributes:
        schedule_id: its canonical id.
        costs: every cost objective by name (``flops``, ``params``, ``latency_ms``; lower is better).
        correct: per-image flags on the validation split, in split order (every schedule compared
            must be scored on the same split).
    """

    schedule_id: str
    costs: Mapping[str, float]
    correct: Any

    @property
    def accuracy(self) -> float:
        """Share of images right, in [0, 1]."""
        flags = _flags(self.correct, self.schedule_id)
        return float(flags.mean()) if flags.size else math.nan


@dataclass(frozen=True)
class Tie:
    """Schedule ``schedule_id`` is tied with front member ``front_id`` (see :func:`tied_band`).

    Attributes:
        schedule_id: the schedule off the front.
        front_id: the front member it cannot be told apart from, and that is nowhere cheaper.
        test: McNemar's test of the front member (``a``) against the schedule (``b``).
    """

    schedule_id: str
    front_id: str
    test: McNemar


@dataclass(frozen=True)
class TiedBand:
    """The tied band of a front: schedules off the front tied with at least one of its members.

    Attributes:
        front: ids of the front members, best accuracy first.
        members: ids of the schedules in the band, best accuracy first.
        ties: every (schedule, front member) pair that is tied.
        accuracy: id -> accuracy of every front member and band member.
        alpha: the significance level used.
    """

    front: tuple[str, ...]
    members: tuple[str, ...]
    ties: tuple[Tie, ...]
    accuracy: Mapping[str, float] = field(default_factory=dict)
    alpha: float = TIE_ALPHA

    def tied_with(self, schedule_id: str) -> list[Tie]:
        """The ties of one band member (empty when it is not in the band)."""
        return [t for t in self.ties if t.schedule_id == schedule_id]

    def schedules(self, limit: int | None = None) -> list[str]:
        """Front and band together, best accuracy first (what a confirmation retrains), at most ``limit``."""
        both = sorted(self.front + self.members, key=lambda s: (-self.accuracy[s], s))
        return both if limit is None else both[:limit]


def tied_band(front: Sequence[ScoredSchedule], others: Sequence[ScoredSchedule], alpha: float = TIE_ALPHA) -> TiedBand:
    """The schedules of ``others`` that are statistically tied with a member of ``front``.

    ``s`` is tied with ``f`` when every cost of ``f`` is >= the same cost of ``s`` (``s`` is at
    least as cheap everywhere) and the exact McNemar test of their per-image results gives
    p >= ``alpha``. No correction for the number of tests is made: the band errs on the side of
    keeping a schedule, which a confirmation at higher fidelity then settles.

    Args:
        front: the non-dominated schedules (the search's Pareto front).
        others: the other schedules, scored on the same images; front members among them are ignored.
        alpha: significance level in (0, 1) (the space's ``confirm.alpha``, default 0.05).

    Returns:
        The :class:`TiedBand`.

    Raises:
        ValueError: ``alpha`` outside (0, 1); schedules with different cost names or per-image
            results of different lengths.

    Example:
        >>> import numpy as np
        >>> from search.engine.noise import ScoredSchedule, tied_band
        >>> f = ScoredSchedule("big", {"flops": 200}, np.r_[np.ones(60, bool), np.zeros(40, bool)])
        >>> s = ScoredSchedule("small", {"flops": 100}, np.r_[np.ones(58, bool), np.zeros(42, bool)])
        >>> tied_band([f], [s]).members
        ('small',)
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a significance level in (0, 1), got {alpha!r}")
    names = {frozenset(s.costs) for s in (*front, *others)}
    if len(names) > 1:
        raise ValueError(f"schedules with different costs cannot be compared: {sorted(sorted(n) for n in names)}")
    front_ids = {f.schedule_id for f in front}
    accuracy = {f.schedule_id: f.accuracy for f in front}
    ties: list[Tie] = []
    for s in others:
        if s.schedule_id in front_ids:
            continue
        for f in front:
            if not all(float(f.costs[c]) >= float(s.costs[c]) for c in f.costs):
                continue
            test = mcnemar(f.correct, s.correct)
            if test.p_value >= alpha:
                ties.append(Tie(s.schedule_id, f.schedule_id, test))
                accuracy[s.schedule_id] = s.accuracy
    members = sorted({t.schedule_id for t in ties}, key=lambda sid: (-accuracy[sid], sid))
    front_order = sorted(front_ids, key=lambda sid: (-accuracy[sid], sid))
    return TiedBand(tuple(front_order), tuple(members), tuple(ties), accuracy, float(alpha))


@dataclass(frozen=True)
class RankAgreement:
    """How well two (or more) measurements of the same schedules agree on their order.

    Attributes:
        tau: Kendall's tau-b; with more than two measurements the mean over every pair.
        p_value: scipy's two-sided test of tau = 0 (two measurements only; nan otherwise).
        low: lower end of the bootstrap interval of ``tau``.
        high: upper end.
        confidence: coverage of the interval (0.95).
        schedules: schedules compared.
        resamples: bootstrap resamples the interval rests on (those where tau is defined).
    """

    tau: float
    p_value: float
    low: float
    high: float
    confidence: float
    schedules: int
    resamples: int


def _mean_tau(columns: np.ndarray) -> float:
    """Mean Kendall tau-b over every pair of columns (nan when one is undefined: a constant column)."""
    from scipy.stats import kendalltau  # noqa: PLC0415

    k = columns.shape[1]
    taus = []
    for i in range(k):
        for j in range(i + 1, k):
            x, y = columns[:, i], columns[:, j]
            if np.all(x == x[0]) or np.all(y == y[0]):
                return math.nan
            taus.append(float(kendalltau(x, y).statistic))
    return float(np.mean(taus))


def rank_agreement(
    *accuracies: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> RankAgreement:
    """Kendall's tau-b between measurements of the same schedules, with a paired bootstrap interval.

    Each argument holds one accuracy per schedule, in the same schedule order (e.g. training
    seed 0 and seed 1, or the search's fidelity and a higher one). tau is Kendall's tau-b (Kendall
    1938, with ties; ``scipy.stats.kendalltau``): +1 the same order, 0 no relation, -1 reversed.
    The interval is the percentile interval of a paired bootstrap over schedules (Efron &
    Tibshirani 1993): schedules are drawn with replacement, each keeping all its measurements;
    resamples in which a measurement is constant (tau undefined) are left out.

    Args:
        *accuracies: two or more sequences of equal length (at least 3 schedules).
        confidence: coverage of the interval, in (0, 1).
        resamples: bootstrap resamples drawn.
        seed: seed of the resampling (the interval is reproducible).

    Returns:
        The :class:`RankAgreement`.

    Raises:
        ValueError: fewer than two measurements or three schedules, lengths that differ, a
            non-finite accuracy, a measurement that is the same for every schedule, or a bad
            ``confidence`` / ``resamples``.

    Example:
        >>> from search.engine.noise import rank_agreement
        >>> r = rank_agreement([0.30, 0.35, 0.40, 0.45], [0.31, 0.33, 0.41, 0.47])
        >>> r.tau, r.schedules
        (1.0, 4)
    """
    from scipy.stats import kendalltau  # noqa: PLC0415

    if len(accuracies) < 2:
        raise ValueError("rank agreement needs at least two measurements of the same schedules")
    lengths = {len(a) for a in accuracies}
    if len(lengths) > 1:
        raise ValueError(f"measurements of {sorted(lengths)} schedules: each must hold one accuracy per schedule, in one order")
    columns = np.column_stack([np.asarray(a, dtype=float) for a in accuracies])
    n = columns.shape[0]
    if n < 3:
        raise ValueError(f"{n} schedule(s): Kendall's tau needs at least 3")
    if not np.isfinite(columns).all():
        raise ValueError("an accuracy is not a finite number")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples!r}")
    tau = _mean_tau(columns)
    if math.isnan(tau):
        raise ValueError("a measurement gives every schedule the same accuracy: no order to compare")
    p = float(kendalltau(columns[:, 0], columns[:, 1]).pvalue) if columns.shape[1] == 2 else math.nan
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    stats = np.array([_mean_tau(columns[idx]) for idx in draws])
    stats = stats[~np.isnan(stats)]
    tail = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(stats, [tail, 1.0 - tail])) if stats.size else (math.nan, math.nan)
    return RankAgreement(float(tau), p, low, high, float(confidence), n, int(stats.size))
