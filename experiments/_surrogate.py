"""The default learning-curve surrogate of ``experiments/bench_search.py``: validation accuracy of a schedule after an epoch.

A surrogate replaces training in the search benchmark (as tabular and surrogate benchmarks do:
NAS-Bench-201/301, YAHPO Gym; Syne Tune's simulator backend replays their curves). Its interface::

    f(schedule: dict[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None) -> float

* ``schedule``: every conv of the network -> its group count; ``flops``/``params``: its exact cost
  (``deeproots.CostTable``); ``epoch``: 1 .. ``max_epochs``.
* ``seed=None``: the noiseless expected accuracy -- the truth the benchmark scores against (the true
  front is the non-dominated set of the truth at ``max_epochs``).
* ``seed=k``: one noisy evaluation, drawn per (schedule, seed, epoch) from a generator seeded by a hash
  of the three, so repetition k of a benchmark sees the same draws whatever the order of the trials.

An optional attribute ``f.batch(groups, layers, flops, params, epoch, max_epochs)`` (``groups``:
int array ``(N, len(layers))``; ``flops``/``params``: int64 ``(N,)``; returns float64 ``(N,)``) gives
the truth of many schedules at once; the benchmark falls back to one call per schedule without it.

The default model (:func:`default_surrogate`), every constant below with its unit:

* **accuracy rising with log FLOPs and log params** -- a power law in the error, the form of the
  scaling-law literature (Hestness et al. 2017; Kaplan et al. 2020):
  ``acc_inf = 1 - ERR0 * (flops / F0) ** -GAMMA_FLOPS * (params / P0) ** -GAMMA_PARAMS``; the constants
  put NIN's ungrouped network at ~37 % (the CPU-sized fidelity of ``spaces/README.md``: 1,500 training
  images, 500 validation images) and NIN's most-grouped schedule (21 M FLOPs, 10x fewer) ~7 points below;
* **a per-layer effect**: grouping some layers costs more accuracy than their FLOPs say and grouping
  others helps (the paper's finding that root modules can improve accuracy):
  ``+ LAYER_SD * z_layer * log2(groups)``, ``z_layer ~ N(0, 1)`` fixed by a hash of the layer name --
  the structure a model-based sampler can learn;
* **a per-schedule effect** (interactions): ``+ SCHEDULE_SD * z_schedule``, hash of the whole schedule;
* **learning curves**: ``acc(epoch) = CHANCE + (acc_inf - CHANCE) * (1 - (1 - epoch / max_epochs) ** p)``
  with ``p = CURVE_P * (flops / F0) ** CURVE_GAMMA``: every curve ends at ``acc_inf``, larger networks
  get there sooner (an assumption: at an early rung a cheap schedule looks worse than it ends, which
  is what accuracy-only early stopping gets wrong);
* **noise**: ``+ N(0, NOISE_SD)`` per (schedule, seed, epoch), clipped to [0, 1]. ``NOISE_SD`` is the
  binomial standard error of an accuracy of ~37 % measured on 500 validation images,
  ``sqrt(0.37 * 0.63 / 500) = 0.0216``: the noise of one evaluation at the CPU-sized fidelity.

Every number is a modelling choice, stated so that it can be argued with; pass another surrogate with
``--surrogate MODULE:FUNCTION`` to test a conclusion's robustness to it.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

__all__ = ["default_surrogate", "same_curves_surrogate", "noiseless_surrogate", "val5000_surrogate", "truth_many",
           "NOISE_SD", "NOISE_SD_5000"]  # fmt: skip

CHANCE = 0.10  # accuracy of a guess on CIFAR-10's 10 classes
ERR0 = 0.645  # error at F0 FLOPs and P0 parameters, at the CPU-sized fidelity
F0 = 1e8  # FLOPs of the error's reference point
P0 = 1e6  # parameters of the error's reference point
GAMMA_FLOPS = 0.03  # error ~ flops ** -0.03: 10x fewer FLOPs -> 7 % more error
GAMMA_PARAMS = 0.015  # error ~ params ** -0.015
LAYER_SD = 0.0015  # accuracy per doubling of one layer's groups, s.d. across layers (0.15 points)
SCHEDULE_SD = 0.005  # per-schedule effect, s.d. (0.5 points)
CURVE_P = 2.0  # learning-curve exponent at F0 FLOPs
CURVE_GAMMA = 0.25  # exponent ~ flops ** 0.25: NIN orig 2.4, NIN's cheapest 1.4
NOISE_SD = math.sqrt(0.37 * 0.63 / 500)  # 0.0216: binomial s.e. of 37 % on 500 validation images
NOISE_SD_5000 = math.sqrt(0.37 * 0.63 / 5000)  # 0.0068: the same on 5,000 (the GPU spaces' validation split)

_MASK = (1 << 64) - 1


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _normal(h: np.ndarray) -> np.ndarray:
    """A standard normal per uint64 hash (Box-Muller on two derived 53-bit uniforms)."""
    u1 = ((_mix(h ^ np.uint64(0x1234567)) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = ((_mix(h ^ np.uint64(0x89ABCDE)) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@lru_cache(maxsize=None)
def _layer_z(name: str) -> float:
    """The layer's fixed standard-normal effect size."""
    return float(_normal(np.array([_hash64(f"layer|{name}")], dtype=np.uint64))[0])


def _schedule_hash(groups: np.ndarray, layers: Sequence[str]) -> np.ndarray:
    """uint64 hash per row of ``groups`` (N, L), independent of the column order."""
    h = np.full(groups.shape[0], _hash64("schedule"), dtype=np.uint64)
    for i in sorted(range(len(layers)), key=lambda i: layers[i]):
        key = np.uint64(_hash64(f"name|{layers[i]}"))
        h = _mix(h ^ _mix(key + groups[:, i].astype(np.uint64)))
    return h


def _final_and_shape(
    g: np.ndarray, layers: Sequence[str], flops: np.ndarray, params: np.ndarray, curve_gamma: float = CURVE_GAMMA
) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy after the last epoch, learning-curve exponent) per row of ``g``."""
    f = np.asarray(flops, dtype=np.float64)
    p = np.asarray(params, dtype=np.float64)
    acc = 1.0 - ERR0 * (f / F0) ** -GAMMA_FLOPS * (p / P0) ** -GAMMA_PARAMS
    for i, name in enumerate(layers):
        acc = acc + LAYER_SD * _layer_z(name) * np.log2(g[:, i].astype(np.float64))
    acc = acc + SCHEDULE_SD * _normal(_schedule_hash(g, layers))
    return acc, CURVE_P * (f / F0) ** curve_gamma


def _curve(acc: np.ndarray, shape: np.ndarray, epoch: int, max_epochs: int) -> np.ndarray:
    return np.clip(CHANCE + (acc - CHANCE) * (1.0 - (1.0 - epoch / max_epochs) ** shape), 0.0, 1.0)


def truth_many(
    groups: np.ndarray, layers: Sequence[str], flops: np.ndarray, params: np.ndarray, epoch: int, max_epochs: int
) -> np.ndarray:
    """Noiseless accuracy of many schedules after ``epoch`` of ``max_epochs`` epochs.

    Args:
        groups: int array ``(N, len(layers))``, each row a schedule's group counts.
        layers: the conv names of the columns.
        flops: int64 ``(N,)``; params: int64 ``(N,)`` (``deeproots.CostTable``).
        epoch: 1 .. ``max_epochs``.

    Returns:
        float64 ``(N,)`` in [0, 1].
    """
    acc, shape = _final_and_shape(np.asarray(groups), layers, flops, params)
    return _curve(acc, shape, epoch, max_epochs)


@lru_cache(maxsize=65536)
def _one(
    items: tuple[tuple[str, int], ...], flops: int, params: int, curve_gamma: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """A schedule's final accuracy, curve exponent and hash (the epoch-independent part, cached)."""
    layers = [name for name, _ in items]
    g = np.array([[count for _, count in items]], dtype=np.int64)
    f, p = np.array([flops], dtype=np.int64), np.array([params], dtype=np.int64)
    acc, shape = _final_and_shape(g, layers, f, p, curve_gamma)
    return acc, shape, int(_schedule_hash(g, layers)[0])


def _evaluate(
    schedule: Mapping[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None,
    curve_gamma: float, noise_sd: float,
) -> float:  # fmt: skip
    if not 1 <= epoch <= max_epochs:
        raise ValueError(f"epoch must be in 1..{max_epochs}, got {epoch}")
    items = tuple((name, int(g)) for name, g in schedule.items())
    acc, shape, key = _one(items, int(flops), int(params), float(curve_gamma))
    truth = float(_curve(acc, shape, epoch, max_epochs)[0])
    if seed is None:
        return truth
    noise = np.random.default_rng([key, int(seed) & _MASK, int(epoch)]).normal(0.0, noise_sd)
    return float(min(1.0, max(0.0, truth + noise)))


def default_surrogate(
    schedule: Mapping[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None
) -> float:
    """Validation accuracy of ``schedule`` after ``epoch`` epochs (the model in the module docstring).

    Args:
        schedule: every conv -> group count.
        flops, params: the schedule's exact cost.
        epoch: 1 .. ``max_epochs``.
        max_epochs: the trainer's epochs.
        seed: None for the noiseless truth; an integer for one noisy evaluation (repetition ``seed``).

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: ``epoch`` outside 1 .. ``max_epochs``.

    Example:
        >>> s = {"a": 1, "b": 4}
        >>> default_surrogate(s, 10**8, 10**6, 3, 3, None) == default_surrogate(s, 10**8, 10**6, 3, 3, None)
        True
    """
    return _evaluate(schedule, flops, params, epoch, max_epochs, seed, CURVE_GAMMA, NOISE_SD)


def same_curves_surrogate(
    schedule: Mapping[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None
) -> float:
    """Sensitivity variant: :func:`default_surrogate` with one learning-curve shape for every schedule.

    ``CURVE_GAMMA = 0``: an early epoch ranks schedules as the last does, up to the noise -- the
    most favourable case for accuracy-only early stopping. The truth (the last epoch) is the default's.
    """
    return _evaluate(schedule, flops, params, epoch, max_epochs, seed, 0.0, NOISE_SD)


def noiseless_surrogate(
    schedule: Mapping[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None
) -> float:
    """Sensitivity variant: :func:`default_surrogate` without noise (the search sees the truth)."""
    return _evaluate(schedule, flops, params, epoch, max_epochs, seed, CURVE_GAMMA, 0.0)


def val5000_surrogate(
    schedule: Mapping[str, int], flops: int, params: int, epoch: int, max_epochs: int, seed: int | None
) -> float:
    """Sensitivity variant: :func:`default_surrogate` with the noise of 5,000 validation images
    (``NOISE_SD_5000``, 0.68 points) -- the validation split the shipped GPU settings use."""
    return _evaluate(schedule, flops, params, epoch, max_epochs, seed, CURVE_GAMMA, NOISE_SD_5000)


default_surrogate.batch = truth_many  # type: ignore[attr-defined]
same_curves_surrogate.batch = lambda groups, layers, flops, params, epoch, max_epochs: _curve(  # type: ignore[attr-defined]
    *_final_and_shape(np.asarray(groups), layers, flops, params, 0.0), epoch, max_epochs
)
noiseless_surrogate.batch = truth_many  # type: ignore[attr-defined]
val5000_surrogate.batch = truth_many  # type: ignore[attr-defined]
