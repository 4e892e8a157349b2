"""Non-dominated sorting and crowding distance (Deb et al., 2002, NSGA-II, Sections III-A and III-B),
with exclusive hypervolume contributions (``moocore``) to order points the crowding distance ties.

Points are rows of a float array, every objective **minimised** (negate accuracies first). Used by
the MO-ASHA rung decisions (:mod:`search.engine._scheduler`). Sorting and crowding are written here
(Optuna's ``_fast_non_dominated_sort`` is private API, and they are a few lines of numpy); the
hypervolume comes from ``moocore``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dominates", "nondominated_ranks", "crowding_distance", "hv_contributions", "rank_order"]


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` Pareto-dominates ``b``: no worse in every objective, better in one (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Front index of each point: 0 for the non-dominated set, 1 for the next front, ...

    Args:
        points: shape ``(n, m)``, every objective minimised.

    Returns:
        int array, shape ``(n,)``.
    """
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=int)
    le = np.all(pts[:, None, :] <= pts[None, :, :], axis=2)
    lt = np.any(pts[:, None, :] < pts[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many dominate j
    ranks = np.full(n, -1, dtype=int)
    front = np.flatnonzero(count == 0)
    r = 0
    while front.size:
        ranks[front] = r
        count = count - dom[front].sum(axis=0)
        count[ranks >= 0] = -1
        front = np.flatnonzero(count == 0)
        r += 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """Crowding distance of each point within one front (boundary points: ``inf``).

    Each objective is scaled by its range in the front; a larger distance is a lonelier point.

    Args:
        points: shape ``(n, m)``, one front.

    Returns:
        float array, shape ``(n,)``.
    """
    pts = np.asarray(points, dtype=float)
    n, m = pts.shape if pts.ndim == 2 else (len(pts), 0)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(pts[:, k], kind="stable")
        lo, hi = pts[order[0], k], pts[order[-1], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi > lo:
            dist[order[1:-1]] += (pts[order[2:], k] - pts[order[:-2], k]) / (hi - lo)
    return dist


def hv_contributions(points: np.ndarray) -> np.ndarray:
    """Exclusive hypervolume contribution of each point of one front, in its min-max normalised box.

    Each objective is scaled to [0, 1] over the points; the reference point is 1.1 in every
    objective (10 % beyond the worst), as in the search benchmark's hypervolume.
    """
    import moocore  # noqa: PLC0415

    pts = np.asarray(points, dtype=float)
    if len(pts) <= 1:
        return np.ones(len(pts))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (pts - lo) / span
    return np.asarray(moocore.hv_contributions(norm, ref=np.full(pts.shape[1], 1.1)), dtype=float)


def rank_order(points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` best first: by front, then crowding distance (larger first), then
    exclusive hypervolume contribution (larger first) -- which orders the boundary points that the
    crowding distance ties at infinity -- then input order, so a decision is reproducible.
    """
    pts = np.asarray(points, dtype=float)
    ranks = nondominated_ranks(pts)
    crowd = np.zeros(len(pts))
    contrib = np.zeros(len(pts))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        crowd[idx] = crowding_distance(pts[idx])
        contrib[idx] = hv_contributions(pts[idx])
    return np.lexsort((np.arange(len(pts)), -contrib, -crowd, ranks))
