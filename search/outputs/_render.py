"""Renderings of an export: ``pareto.csv``, the Markdown table, ``report.md``, the dashboard note, the console table."""

from __future__ import annotations

import csv
import math
import shlex
from pathlib import Path
from typing import Any

from deeproots._exported import ExportedConfig

from ._evaluate import VAL_TOLERANCE
from ._locate import RunView
from ._tables import outcome_counts, state_counts

__all__ = ["CSV_COLUMNS", "CSV_UNITS", "CSV_CONFIRMED", "csv_row", "write_csv", "markdown_table", "report", "note", "summary_table",
           "export_stamp"]  # fmt: skip

#: ``pareto.csv``'s columns. One unit convention: every accuracy, standard error and share of the
#: ungrouped network is a fraction in [0, 1] (0.386 = 38.6 %), as in the study and the YAML; the
#: header says so in the names that are not objectives (``*_fraction_of_orig``, ``latency_ms``).
CSV_COLUMNS = [
    "schedule_id", "name", "trial", "val_accuracy", "val_accuracy_se", "test_accuracy", "flops",
    "flops_fraction_of_orig", "params", "params_fraction_of_orig", "latency_ms", "epochs", "config", "weights",
    "onnx", "confirmed", "seeds", "val_accuracy_sd", "val_accuracy_per_seed", "test_accuracy_sd",
    "test_accuracy_per_seed", "search_val_accuracy",
]  # fmt: skip
#: How a confirmed front fills the columns (the report says it).
CSV_CONFIRMED = (
    "with a confirmation (`confirmed` yes) `val_accuracy` is the mean over the `seeds` training seeds at the "
    "confirmation's fidelity (`val_accuracy_sd` their standard deviation, `val_accuracy_per_seed` each one, "
    "`seed:accuracy` separated by `;`), `test_accuracy` the mean over the seeds' models (likewise `_sd`, `_per_seed`) and "
    "`search_val_accuracy` the search's single score; without one (`confirmed` no) those columns are empty"
)
#: The units of ``pareto.csv``, as the report states them.
CSV_UNITS = (
    "accuracies, their standard errors (`val_accuracy_se`) and `*_fraction_of_orig` are fractions in [0, 1] "
    "(0.386 = 38.6 %); `flops` are multiply-adds, `params` a count, `latency_ms` milliseconds per image"
)


def csv_row(cfg: ExportedConfig) -> dict[str, Any]:
    """One ``pareto.csv`` row of an exported model (see :data:`CSV_COLUMNS`)."""
    m = cfg.metrics
    yaml_name = cfg.path.name if cfg.path is not None else ""
    return {
        "schedule_id": cfg.schedule_id,
        "name": cfg.schedule_name or "",
        "trial": cfg.search.get("trial"),
        "val_accuracy": m.get("val_accuracy"),
        "val_accuracy_se": m.get("val_accuracy_se"),
        "test_accuracy": m.get("test_accuracy"),
        "flops": m.get("flops"),
        "flops_fraction_of_orig": _fraction(m.get("flops_vs_orig_percent")),
        "params": m.get("params"),
        "params_fraction_of_orig": _fraction(m.get("params_vs_orig_percent")),
        "latency_ms": m.get("latency_ms"),
        "epochs": m.get("epochs_trained"),
        "config": yaml_name,
        "weights": cfg.weights or "",
        "onnx": (cfg.onnx or {}).get("file", ""),
        "confirmed": "yes" if m.get("confirmed") else "no",
        "seeds": m.get("seeds"),
        "val_accuracy_sd": m.get("val_accuracy_sd"),
        "val_accuracy_per_seed": _per_seed(m.get("val_accuracy_per_seed")),
        "test_accuracy_sd": m.get("test_accuracy_sd"),
        "test_accuracy_per_seed": _per_seed(m.get("test_accuracy_per_seed")),
        "search_val_accuracy": m.get("search_val_accuracy"),
    }


def _per_seed(values: Any) -> str | None:
    """``{1: 0.41, 2: 0.43}`` -> ``"1:0.41;2:0.43"`` (one CSV cell)."""
    return ";".join(f"{k}:{v:.4f}" for k, v in values.items()) if values else None


def _fraction(percent: Any) -> float | None:
    return None if percent is None else round(float(percent) / 100.0, 4)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``pareto.csv``: one row per exported model."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    return path


def _fmt_acc(v: Any, se: Any = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{100 * float(v):.2f} %"
    return f"{100 * float(v):.2f} ± {100 * float(se):.2f} %"


def _fmt_val(r: dict[str, Any]) -> str:
    """Validation accuracy ± s.e. (one score), or mean ± s.d. over the seeds of a confirmed row."""
    if r.get("confirmed") == "yes":
        sd = r.get("val_accuracy_sd")
        return f"{_fmt_acc(r['val_accuracy'], sd)} (s.d., {r.get('seeds')} seeds)"
    return _fmt_acc(r["val_accuracy"], r.get("val_accuracy_se"))


def _fmt_test(r: dict[str, Any]) -> str:
    return _fmt_acc(r["test_accuracy"], r.get("test_accuracy_sd") if r.get("confirmed") == "yes" else None)


def _fmt_share(fraction: Any) -> str:
    return "-" if fraction is None else f"{100 * float(fraction):.1f} %"


def export_stamp(view: RunView) -> str:
    """``Exported <time> by deeproots <version> (git <rev>)``: the one line the report and the dashboard note share."""
    prov = view.provenance
    return f"Exported {view.time} by deeproots {prov.get('deeproots')} (git {prov.get('git_revision') or '-'})"


def _fmt_int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def markdown_table(rows: list[dict[str, Any]], objectives: list[str], links: bool = True) -> str:
    head = ["schedule", "paper name", "val acc ± s.e.", "test acc", "FLOPs", "FLOPs vs orig", "params", "params vs orig"]
    lat = "latency_ms" in objectives or any(r.get("latency_ms") for r in rows)
    if lat:
        head.append("latency (ms)")
    head.append("config")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head) - 1)) + "|---|"]
    for r in rows:
        cells = [
            f"`{r['schedule_id']}`", r["name"] or "", _fmt_val(r), _fmt_test(r), _fmt_int(r["flops"]), _fmt_share(r["flops_fraction_of_orig"]),
            _fmt_int(r["params"]), _fmt_share(r["params_fraction_of_orig"]),
        ]  # fmt: skip
        if lat:
            cells.append("-" if r.get("latency_ms") is None else f"{r['latency_ms']:.3f}")
        cells.append(f"[{r['config']}]({r['config']})" if links else r["config"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(view: RunView, result: Any) -> str:
    """``report.md``: what was searched, the Pareto table with test accuracy, figures, how to use it."""
    study, objectives, prov = view.study, view.objectives, view.provenance
    counts, outcomes, orig_cost = state_counts(study), outcome_counts(study), view.orig_cost
    data = view.meta.data_config
    trainer = view.meta.train_config
    rows = result.rows
    checks = [(c.metrics.get("val_accuracy"), c.metrics.get("val_accuracy_reevaluated")) for c in result.configs]
    checks = [(a, b) for a, b in checks if a is not None and b is not None]
    evaluated = sum(1 for t in view.trials() if t.counted)
    lines = [
        f"# Pareto set of study `{study.study_name}`",
        "",
        f"{export_stamp(view)}, torch {prov.get('torch')}, from `{result.storage_url}`.",
        "",
        f"- trials: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; outcomes: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}; distinct schedules trained: {evaluated}",
        f"- objectives: {', '.join(objectives)}; sampler: {view.meta.sampler or '-'}",
        f"- data: {data.get('name', '-')}, training subset {data.get('subset') or 'all'}, "
        f"{data.get('val_size', '-')} validation images (seed {data.get('seed', 0)}); the test set was not used by the search",
        f"- trainer: {trainer.get('epochs', '-')} epochs, batch {trainer.get('batch_size', '-')}, lr {trainer.get('lr', '-')} "
        f"({trainer.get('lr_schedule', '-')}); a search trains at low fidelity -- retrain a config at a full budget with "
        f"`python -m deeproots.train --config <config> --epochs N --seeds K`",
    ]
    if orig_cost is not None:
        lines.append(f"- ungrouped network (`orig`): {orig_cost.flops:,} FLOPs, {orig_cost.params:,} parameters (the 100 % of the table)")
    lines.append(f"- normalised hypervolume of all trials: {result.hypervolume:.4f} (see the module docstring of `search/outputs/_plots.py`)")
    lines += ["", f"## Pareto set ({len(rows)} schedules)", ""]
    lines += [line for item in getattr(result, "confirmation", []) for line in (item, "")]
    lines += [markdown_table(rows, objectives), ""]
    lines.append(
        f"val acc: final-epoch accuracy on the validation split ({data.get('val_size', '-')} images), as recorded by the "
        "search, ± one binomial standard error (the noise of the finite validation split alone; another training seed "
        "adds its own); test acc: the exported weights on the test set, measured once at export. "
        f"In `pareto.csv` {CSV_UNITS}; {CSV_CONFIRMED}."
    )
    if checks:
        worst = max(abs(a - b) for a, b in checks)
        if worst <= VAL_TOLERANCE:
            lines.append(
                f"Re-evaluating the exported weights on the validation split reproduces the recorded accuracy "
                f"(largest difference {100 * worst:.3f} points over {len(checks)} model(s))."
            )
        else:
            lines.append(
                f"**Warning:** re-evaluating the exported weights on the validation split differs from the recorded "
                f"accuracy by up to {100 * worst:.2f} points: the weights may not be the ones the search scored."
            )
    if any(r.get("onnx") for r in rows):
        diffs = [c.onnx["max_abs_diff"] for c in result.configs if c.onnx]
        lines.append(f"ONNX files agree with PyTorch on one test batch (largest |logit difference| {max(diffs):.2e}).")
    lines += ["", "## Figures", ""]
    for stem, title in (("accuracy_vs_flops", "accuracy vs FLOPs"), ("accuracy_vs_params", "accuracy vs parameters"),
                        ("accuracy_vs_latency", "accuracy vs latency"), ("hypervolume", "hypervolume over trials")):  # fmt: skip
        if f"{stem}.png" in result.files:
            html = f" ([interactive]({stem}.html))" if f"{stem}.html" in result.files else ""
            lines += [f"![{title}]({stem}.png){html}", ""]
    lines += [
        "Grey: every schedule evaluated (early-stopped ones as x at their partial accuracy); red: the Pareto set over "
        "all objectives; bars: ± one standard error; dashed: the front of the 2-D view; labels: the paper's named "
        "schedules, and `#<trial>` for the other members of the Pareto set (the `trial` column of `pareto.csv`). "
        "Each figure is also written as SVG and PDF (same name) for a paper.",
        "",
        "## Use a model",
        "",
        "```python",
        "import deeproots",
        f"model = deeproots.load_exported(\"{(result.out_dir / rows[0]['config']).as_posix() if rows else 'export/<id>.yaml'}\")",
        "```",
        "",
        "Retrain at a full budget (mean ± std over seeds):",
        "",
        "```bash",
        f"python -m deeproots.train --config {(result.out_dir / rows[0]['config']).as_posix() if rows else 'export/<id>.yaml'} --epochs 30 --seeds 3",
        "```",
        "",
        "## Dashboard",
        "",
        "```bash",
        f"optuna-dashboard {shlex.quote(result.storage_url)}",
        "```",
        "",
        "The figures above are attached to the study (the dashboard's study page) with this table as the study note.",
        "",
    ]
    return "\n".join(lines)


def note(result: Any, view: RunView) -> str:
    """The Markdown note attached to the study for optuna-dashboard (same time stamp as the report)."""
    objectives = view.objectives
    return (
        f"## Pareto set ({len(result.rows)} schedules)\n\n"
        + markdown_table(result.rows, objectives, links=False)
        + f"\n\n{export_stamp(view)} to `{result.out_dir.as_posix()}`: one YAML + safetensors per "
        "schedule, `pareto.csv`, `report.md`. Validation accuracy ± one binomial standard error; test accuracy "
        "measured once at export. Load one with `deeproots.load_exported(path)`.\n"
    )


def summary_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"exported Pareto set ({len(rows)} schedules)", title_justify="left")
    for col in ("trial", "schedule", "val acc ± s.e.", "test acc", "FLOPs", "params", "config"):
        table.add_column(col, justify="right" if col not in ("schedule", "config") else "left")
    for r in rows:
        label = r["schedule_id"] + (f" ({r['name']})" if r["name"] else "")
        table.add_row(str(r["trial"]), label, _fmt_val(r), _fmt_test(r),
                      _fmt_int(r["flops"]), _fmt_int(r["params"]), r["config"])  # fmt: skip
    return table
