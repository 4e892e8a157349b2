"""Figures of a study: accuracy vs FLOPs / params (/ latency) with the Pareto set, hypervolume over trials.

Three outputs of the same data:

* PNG at 200 dpi, SVG and PDF (matplotlib, headless ``Agg``) -- for the report, the README and a paper;
* interactive HTML -- Optuna's ``plot_pareto_front`` (hover shows each trial's schedule) and a
  plotly hypervolume curve, sharing one ``plotly.min.js`` in the export folder (works offline);
* the same plotly figures attached to the study (``optuna_dashboard.save_plotly_graph_object``)
  so ``optuna-dashboard`` shows them next to its own plots.

Every point is one distinct schedule: duplicates answered from a stored result are folded into the
trial that trained it. The Pareto set is the study's (all objectives at once, feasible trials only)
-- in a 2-D projection some of its points can look dominated; the dashed line is the 2-D front of
that projection. Schedules with a paper name (``orig``, ``root-8``, ...) are labelled with it, the
other members of the Pareto set with their trial number (``#7``, the ``trial`` column of
``pareto.csv``). Error bars are one standard error of each validation accuracy (the trial's
``val_accuracy_se``: binomial, the noise of the finite validation split alone). Titles name no
study and stay within :data:`TITLE_MAX` characters, so they fit optuna-dashboard's half-width cards.

**Hypervolume** is normalised so runs compare: loss ``1 - val_accuracy`` in [0, 1]; FLOPs and
parameters divided by the architecture's ungrouped (``orig``) cost, so in [0, 1] as well; latency
divided by the largest measured one. The reference point is (1, 1.1, 1.1[, 1.1]) -- 10 % beyond
the ungrouped network, so that it still adds volume -- and the value shown is the dominated
fraction of that box (1.0 would be a perfect, free network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..engine.record import TrialView
from ._locate import RunView

__all__ = ["Point", "collect_points", "hypervolume", "hypervolume_history", "write_figures", "attach_to_study",
           "TITLE_MAX", "FORMATS", "PNG_DPI"]  # fmt: skip

#: Axis titles / units per objective name.
_LABELS = {
    "val_accuracy": "validation accuracy",
    "flops": "FLOPs (multiply-adds, millions)",
    "params": "parameters (millions)",
    "latency_ms": "latency (ms per image)",
}
_SHORT = {"flops": "FLOPs", "params": "parameters", "latency_ms": "latency", "val_accuracy": "accuracy"}
_SCALE = {"flops": 1e-6, "params": 1e-6, "latency_ms": 1.0, "val_accuracy": 1.0}
#: Graph-object ids in the study (re-exporting overwrites them).
GRAPH_IDS = {"flops": "deeproots-accuracy-vs-flops", "params": "deeproots-accuracy-vs-params",
             "latency_ms": "deeproots-accuracy-vs-latency", "hypervolume": "deeproots-hypervolume"}  # fmt: skip
_REF_MARGIN = 1.1
#: Longest figure title (characters): a half-width optuna-dashboard card shows about this many at
#: plotly's default title font without clipping.
TITLE_MAX = 56
#: Files written per matplotlib figure (PNG for screens, SVG and PDF for papers), and the PNG's resolution.
FORMATS = ("png", "svg", "pdf")
PNG_DPI = 200
_HV_AXIS = "normalised hypervolume (ref. 1.1 × orig cost)"


@dataclass
class Point:
    """One distinct schedule of the study.

    Attributes:
        number: the trial that trained it (duplicates point to it).
        schedule_id: canonical id.
        label: its paper name (``root-8``), else None.
        values: objective name -> value (partial values for early-stopped trials).
        kind: ``"evaluated"`` (COMPLETE), ``"early_stopped"`` (PRUNED by ASHA, partial values).
        pareto: on the study's Pareto set.
        se: standard error of ``values["val_accuracy"]`` (a fraction), or None.
    """

    number: int
    schedule_id: str
    label: str | None
    values: dict[str, float]
    kind: str = "evaluated"
    pareto: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    se: float | None = None

    @property
    def tag(self) -> str | None:
        """What the figures write beside the point: its paper name; on the Pareto set, else ``#<trial>``."""
        return self.label or (f"#{self.number}" if self.pareto else None)


def collect_points(
    study: optuna.Study, paper: dict[str, str] | None = None, pareto_ids: set[str] | None = None,
    val_images: int | None = None,
) -> list[Point]:  # fmt: skip
    """Distinct schedules with their objective values, in trial order.

    Args:
        study: the study.
        paper: schedule id -> paper name (labels).
        pareto_ids: schedule ids of the Pareto set (default: from ``study.best_trials``).
        val_images: validation images (``data.val_size``): the standard error of trials that did not
            record one is computed from it.
    """
    from ._tables import standard_error  # noqa: PLC0415

    names = list(study.metric_names or [])
    paper = paper or {}
    if pareto_ids is None:
        pareto_ids = {TrialView(t).schedule_id for t in study.best_trials}
    points: dict[str, Point] = {}
    for t in study.get_trials(deepcopy=False):
        view = TrialView(t)
        sid = view.schedule_id
        if sid in points:
            continue
        label = view.seed_label or paper.get(sid)
        if t.state == TrialState.COMPLETE and t.values is not None:
            values = dict(zip(names, t.values))
            se = standard_error(view, values.get("val_accuracy"), val_images)
            points[sid] = Point(t.number, sid, label, values, "evaluated", sid in pareto_ids, se=se)
        elif t.state == TrialState.PRUNED and view.partial_values is not None:
            se = standard_error(view, view.partial_values.get("val_accuracy"), val_images)
            points[sid] = Point(t.number, sid, label, view.partial_values, "early_stopped", False, se=se)
    return list(points.values())


# ----------------------------------------------------------------------------------- hypervolume


def _nondominated(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    pts = sorted(set(points))
    keep = []
    for p in pts:
        if not any(all(q[i] <= p[i] for i in range(len(p))) and q != p for q in pts):
            keep.append(p)
    return keep


def hypervolume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """Exact hypervolume dominated by ``points`` (all objectives minimised) up to ``ref``.

    Slices along the last objective (HSO); fine for the fronts of a schedule search (tens of
    points, 2-4 objectives). Points not strictly better than ``ref`` in every objective add nothing.
    """
    pts = [p for p in points if all(a < r for a, r in zip(p, ref))]
    if not pts:
        return 0.0
    pts = _nondominated(pts)
    d = len(ref)
    if d == 1:
        return ref[0] - min(p[0] for p in pts)
    if d == 2:
        vol, best_y = 0.0, ref[1]
        for x, y in sorted(pts):
            if y < best_y:
                vol += (ref[0] - x) * (best_y - y)
                best_y = y
        return vol
    pts.sort(key=lambda p: p[-1])
    vol = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            vol += hypervolume([q[:-1] for q in pts[: i + 1]], ref[:-1]) * (upper - p[-1])
    return vol


def _normalisers(points: list[Point], objectives: list[str], base: Any) -> dict[str, float]:
    """Cost objective -> divisor (the ungrouped network's cost ``base``; the largest latency measured)."""
    out: dict[str, float] = {}
    for o in objectives:
        if o == "val_accuracy":
            continue
        observed = max((p.values.get(o, 0.0) for p in points), default=0.0) or 1.0
        if o == "flops" and base is not None:
            out[o] = float(base.flops)
        elif o == "params" and base is not None:
            out[o] = float(base.params)
        else:
            out[o] = float(observed)
    return out


def _as_loss(values: dict[str, float], objectives: list[str], norm: dict[str, float]) -> tuple[float, ...]:
    return tuple(1.0 - values[o] if o == "val_accuracy" else values[o] / norm[o] for o in objectives)


def hypervolume_history(
    study: optuna.Study, objectives: list[str], norm: dict[str, float]
) -> list[tuple[int, float]]:
    """(trial number, normalised hypervolume of every COMPLETE trial up to it), per COMPLETE trial."""
    ref = tuple(1.0 if o == "val_accuracy" else _REF_MARGIN for o in objectives)
    box = math.prod(ref)
    seen: list[tuple[float, ...]] = []
    out: list[tuple[int, float]] = []
    hv = 0.0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is None or not TrialView(t).feasible:
            continue
        values = dict(zip(study.metric_names or objectives, t.values))
        p = _as_loss(values, objectives, norm)
        if p not in seen:
            seen.append(p)
            hv = hypervolume(seen, ref) / box
        out.append((t.number, hv))
    return out


# ----------------------------------------------------------------------------------- figures


def _front_2d(points: list[Point], x: str) -> list[Point]:
    """Points not dominated in (accuracy up, ``x`` down), by ascending ``x``."""
    pts = sorted((p for p in points if p.kind == "evaluated"), key=lambda p: (p.values[x], -p.values["val_accuracy"]))
    front, best = [], -math.inf
    for p in pts:
        if p.values["val_accuracy"] > best:
            front.append(p)
            best = p.values["val_accuracy"]
    return front


def _save(fig: Any, stem: Path) -> dict[str, Path]:
    """Write ``fig`` as ``stem``.png (:data:`PNG_DPI`), .svg and .pdf; returns file name -> path."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out = {}
    for ext in FORMATS:
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=PNG_DPI if ext == "png" else None, metadata={"Creator": "deeproots"} if ext != "pdf" else None)
        out[path.name] = path
    plt.close(fig)
    return out


def _figure(height: float) -> tuple[Any, Any]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt.subplots(figsize=(7.5, height))


def _png_tradeoff(points: list[Point], x: str, stem: Path, title: str) -> dict[str, Path]:
    """Accuracy vs ``x`` as PNG, SVG and PDF (``stem`` + suffix); returns file name -> path."""
    s = _SCALE[x]
    fig, ax = _figure(5.0)
    groups = (
        ("early_stopped", False, dict(marker="x", color="#bbbbbb", s=22, label="early-stopped (partial)")),
        ("evaluated", False, dict(marker="o", color="#9a9a9a", s=22, alpha=0.8, label="evaluated")),
        ("evaluated", True, dict(marker="o", color="#d62728", s=46, edgecolor="black", linewidth=0.6, zorder=3,
                                 label="Pareto set (all objectives)")),
    )  # fmt: skip
    for kind, pareto, style in groups:
        sel = [p for p in points if p.kind == kind and p.pareto == pareto and x in p.values]
        if not sel:
            continue
        xs, ys = [p.values[x] * s for p in sel], [p.values["val_accuracy"] for p in sel]
        bars = [(xx, yy, p.se) for xx, yy, p in zip(xs, ys, sel) if p.se is not None]
        if bars:
            ax.errorbar([b[0] for b in bars], [b[1] for b in bars], yerr=[b[2] for b in bars], fmt="none",
                        ecolor="#d62728" if pareto else "#c8c8c8", elinewidth=0.9 if pareto else 0.7, capsize=2 if pareto else 0,
                        alpha=0.7 if pareto else 0.6, zorder=2 if pareto else 1)  # fmt: skip
        ax.scatter(xs, ys, **style)
    front = _front_2d([p for p in points if x in p.values], x)
    if len(front) > 1:
        ax.step([p.values[x] * s for p in front], [p.values["val_accuracy"] for p in front], where="post",
                color="#d62728", linestyle="--", linewidth=1, alpha=0.6, label="front in this view")  # fmt: skip
    for p in points:
        if p.tag and x in p.values:
            ax.annotate(p.tag, (p.values[x] * s, p.values["val_accuracy"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8, color="#1f3b73" if p.pareto else "#444444")  # fmt: skip
    ax.set_xlabel(_LABELS[x])
    ax.set_ylabel(_LABELS["val_accuracy"] + (" (± 1 s.e.)" if any(p.se is not None for p in points) else ""))
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.08)  # room for the labels at the edges
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    return _save(fig, stem)


def _png_hypervolume(history: list[tuple[int, float]], seeds_until: int | None, stem: Path, title: str) -> dict[str, Path]:
    """The hypervolume curve as PNG, SVG and PDF (``stem`` + suffix); returns file name -> path."""
    fig, ax = _figure(4.0)
    if history:
        ax.step([n for n, _ in history], [v for _, v in history], where="post", color="#1f77b4")
        ax.scatter([n for n, _ in history], [v for _, v in history], s=10, color="#1f77b4")
    if seeds_until is not None:
        ax.axvline(seeds_until + 0.5, color="#888888", linestyle=":", linewidth=1)
        ax.text(seeds_until + 0.5, 0.98, "paper seeds | search ", fontsize=8, color="#666666", va="top", ha="center",
                transform=ax.get_xaxis_transform(), backgroundcolor="white")  # fmt: skip
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(_HV_AXIS)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, stem)


def _hover(p: Point) -> str:
    v = p.values
    parts = [f"<b>{p.label}</b> " if p.label else "", p.schedule_id, f"<br>trial #{p.number}"]
    if p.kind == "early_stopped":
        parts.append(" (early-stopped: partial)")
    se = f" ± {100 * p.se:.2f}" if p.se is not None else ""
    parts.append(f"<br>val accuracy {100 * v.get('val_accuracy', math.nan):.2f}{se} %")
    for o in ("flops", "params"):
        if o in v:
            parts.append(f"<br>{_SHORT[o]} {v[o] * _SCALE[o]:.3f} M")
    if "latency_ms" in v:
        parts.append(f"<br>latency {v['latency_ms']:.3f} ms")
    return "".join(parts)


def _plotly_tradeoff(points: list[Point], x: str, title: str) -> Any:
    """Accuracy vs ``x``: the PNG's layers, with a short hover text per schedule (kept small: the
    dashboard stores the figure in the study and sends it on every refresh)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    s = _SCALE[x]
    fig = go.Figure()
    layers = (
        ("early_stopped", False, "early-stopped (partial)", {"symbol": "x", "color": "#bbbbbb", "size": 7}),
        ("evaluated", False, "evaluated", {"color": "#9a9a9a", "size": 7}),
        ("evaluated", True, "Pareto set (all objectives)", {"color": "#d62728", "size": 10, "line": {"width": 1, "color": "black"}}),
    )  # fmt: skip
    for kind, pareto, name, marker in layers:
        sel = [p for p in points if p.kind == kind and p.pareto == pareto and x in p.values]
        if sel:
            errors = None
            if any(p.se is not None for p in sel):
                errors = {"type": "data", "array": [p.se if p.se is not None else 0.0 for p in sel], "thickness": 1,
                          "width": 2 if pareto else 0, "color": "#d62728" if pareto else "#c8c8c8"}  # fmt: skip
            fig.add_trace(go.Scatter(
                x=[p.values[x] * s for p in sel], y=[p.values["val_accuracy"] for p in sel], mode="markers",
                name=name, marker=marker, text=[_hover(p) for p in sel], hovertemplate="%{text}<extra></extra>",
                error_y=errors,
            ))  # fmt: skip
    front = _front_2d([p for p in points if x in p.values], x)
    if len(front) > 1:
        fig.add_trace(go.Scatter(
            x=[p.values[x] * s for p in front], y=[p.values["val_accuracy"] for p in front], mode="lines",
            line={"shape": "hv", "dash": "dash", "color": "#d62728", "width": 1}, name="front in this view",
            hoverinfo="skip",
        ))  # fmt: skip
    for p in points:
        if p.tag and x in p.values:
            fig.add_annotation(x=p.values[x] * s, y=p.values["val_accuracy"], text=p.tag, showarrow=False,
                               xshift=4, yshift=9, xanchor="left", font={"size": 10})  # fmt: skip
    fig.update_layout(title=title, xaxis_title=_LABELS[x], yaxis_title=_LABELS["val_accuracy"], template="none",
                      xaxis={"showgrid": True, "gridcolor": "#e5e5e5"}, yaxis={"showgrid": True, "gridcolor": "#e5e5e5"},
                      legend={"orientation": "h", "y": -0.18})  # fmt: skip
    return fig


def _optuna_pareto_front(study: optuna.Study) -> Any:
    """Optuna's own Pareto-front plot of the study (3-D over accuracy, FLOPs, params when present)."""
    names = list(study.metric_names or [])
    picked = [o for o in ("flops", "params", "val_accuracy") if o in names]
    if len(picked) < 2:
        picked = names[:3]
    idx = [names.index(o) for o in picked]
    return optuna.visualization.plot_pareto_front(
        study, targets=lambda t: tuple(t.values[i] for i in idx), target_names=[_LABELS.get(o, o) for o in picked]
    )


def _plotly_hypervolume(history: list[tuple[int, float]], title: str) -> Any:
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure(go.Scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers",
                               line={"shape": "hv"}, name="hypervolume"))  # fmt: skip
    fig.update_layout(title=title, xaxis_title="trial number", yaxis_title=_HV_AXIS, template="none",
                      xaxis={"showgrid": True, "gridcolor": "#e5e5e5"}, yaxis={"showgrid": True, "gridcolor": "#e5e5e5"})  # fmt: skip
    return fig


def tradeoff_title(x: str, schedules: int, front: int) -> str:
    """``Accuracy vs FLOPs: 10 schedules, 6 on the front`` (no study name; at most :data:`TITLE_MAX` characters)."""
    title = f"Accuracy vs {_SHORT[x]}: {schedules:,} schedules, {front:,} on the front"
    return title if len(title) <= TITLE_MAX else f"Accuracy vs {_SHORT[x]}: {front:,} of {schedules:,} on the front"


def write_figures(view: RunView, out_dir: str | Path, *, pareto_ids: set[str] | None = None, html: bool = True) -> dict[str, Any]:
    """Write the PNG (and HTML) figures of a run's study into ``out_dir``.

    Returns:
        ``{"files": {file name: path}, "figures": {graph id: plotly figure}, "hypervolume": last value,
        "points": [Point], "normalisers": {objective: divisor}}`` -- the plotly figures are what
        :func:`attach_to_study` saves.
    """
    study = view.study
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objectives = list(study.metric_names or [])
    val_images = view.meta.data_config.get("val_size")
    points = collect_points(study, view.paper, pareto_ids, int(val_images) if val_images else None)
    n_front = sum(p.pareto for p in points)
    files: dict[str, Path] = {}
    figures: dict[str, Any] = {}
    for x in (o for o in objectives if o != "val_accuracy"):
        title = tradeoff_title(x, len(points), n_front)
        png = out / f"accuracy_vs_{x.removesuffix('_ms')}.png"
        files.update(_png_tradeoff(points, x, png.with_suffix(""), title))
        if html:
            fig = _plotly_tradeoff(points, x, title)
            figures[GRAPH_IDS[x]] = fig
            path = out / f"{png.stem}.html"
            fig.write_html(path, include_plotlyjs="directory")
            files[f"{png.stem}.html"] = path
    norm = _normalisers(points, objectives, view.orig_cost)
    history = hypervolume_history(study, objectives, norm)
    seeds = [t.number for t in study.get_trials(deepcopy=False) if TrialView(t).seed_label]
    title = "Hypervolume over trials"
    files.update(_png_hypervolume(history, max(seeds) if seeds else None, out / "hypervolume", title))
    if html:
        fig = _plotly_hypervolume(history, title)
        figures[GRAPH_IDS["hypervolume"]] = fig
        path = out / "hypervolume.html"
        fig.write_html(path, include_plotlyjs="directory")
        files["hypervolume.html"] = path
        path = out / "pareto_front.html"  # Optuna's own view, all trials with their attributes on hover
        _optuna_pareto_front(study).write_html(path, include_plotlyjs="directory")
        files["pareto_front.html"] = path
    return {"files": files, "figures": figures, "hypervolume": history[-1][1] if history else 0.0,
            "points": points, "normalisers": norm}  # fmt: skip


def attach_to_study(study: optuna.Study, figures: dict[str, Any], note: str | None = None) -> None:
    """Save the plotly figures and a Markdown note on the study, for optuna-dashboard.

    Fixed graph-object ids, so exporting again replaces them instead of piling up copies.
    """
    from optuna_dashboard import save_note, save_plotly_graph_object  # noqa: PLC0415

    for gid, fig in figures.items():
        save_plotly_graph_object(study, fig, graph_object_id=gid)
    if note is not None:
        save_note(study, note)
