"""The export step: a study's Pareto set out as files a user keeps.

For every Pareto-optimal schedule (one per schedule; duplicates folded into the trial that trained
it) ``RUN/export/`` gets

* ``<id>.yaml`` -- a :class:`deeproots.ExportedConfig` (architecture, full schedule and id, objective
  values, the trainer config and the data it was trained on, the study/trial it came from,
  provenance), read by :func:`deeproots.load_exported` and ``python -m deeproots.train --config``;
* ``<id>.safetensors`` -- the trial's final weights, copied from its final checkpoint wherever Tune
  stored it (read with ``ray.tune.Checkpoint``: a local or network folder, ``s3://``, ``gs://``), with
  their SHA-256 in the YAML (nothing is ever unpickled);
* ``<id>.onnx`` with ``--onnx`` -- checked against PyTorch's output on one test batch;

and, for the whole set, ``pareto.csv``, ``report.md``, the figures (:mod:`search.outputs._plots`) and
a ``manifest.json`` of what was written (a later export removes files of schedules that left the
front). Every exported model is rebuilt from its files and evaluated on the test set
(:mod:`search.outputs._evaluate`). The study is only read, except for the figures and a note with the
Pareto table, which are attached to it for optuna-dashboard (``dashboard=False`` skips that).

Jobs, one module each: locating and reading a run (:mod:`._locate`), evaluating models
(:mod:`._evaluate`), renderings (:mod:`._render`, :mod:`._plots`); this module only puts them in order.
"""

from __future__ import annotations

import json
import os
import shutil
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deeproots._exported import ExportedConfig, sha256_file

from .._text import duration
from ..engine.record import Attr, TrialFiles, TrialView
from ._evaluate import VAL_TOLERANCE, EvaluationCache, eval_device, evaluate_model, export_onnx, load_test_data
from ._locate import ExportError, RunView, final_checkpoint, find_weights, locate_run, open_run, weights_stem
from ._render import csv_row, note, report, summary_table, write_csv
from ._tables import pareto_rows, standard_error

__all__ = ["ExportError", "ExportResult", "export_run", "export_study"]


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: the export folder.
        storage_url: the study's storage.
        study_name: the study.
        configs: one :class:`deeproots.ExportedConfig` per exported schedule, best accuracy first.
        rows: the ``pareto.csv`` rows, same order.
        files: name -> path of everything written.
        hypervolume: normalised hypervolume of the study's COMPLETE trials (see :mod:`search.outputs._plots`).
        confirmation: what the report says about the confirmation (:func:`search.outputs._confirmed.confirmation_lines`):
            one line for an unconfirmed front.
    """

    out_dir: Path
    storage_url: str
    study_name: str
    configs: list[ExportedConfig] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    hypervolume: float = 0.0
    confirmation: list[str] = field(default_factory=list)


def _console_print() -> Callable[[Any], None]:
    from ..runner._estimate import console  # noqa: PLC0415

    return console().print


def export_run(
    run_dir: str | Path,
    *,
    study: str | None = None,
    out_dir: str | Path | None = None,
    onnx: bool = False,
    test: bool = True,
    data_root: str | Path | None = None,
    dashboard: bool = True,
    print_fn: Callable[[Any], None] | None = None,
) -> ExportResult:
    """Export the Pareto set of the study of run folder ``run_dir`` into ``run_dir/export``.

    This is what ``python -m search.export RUN`` and the end of ``python -m search.run`` call.

    Args:
        run_dir: ``runs/<name>`` (its ``run.json`` names storage and study; else its ``study.db``).
        study: another study of the run (a ``--fresh`` run holds several).
        out_dir: where to write (default ``run_dir/export``).
        onnx: also write an ONNX file per model, checked against PyTorch.
        test: evaluate every exported model on the test set.
        data_root: where the data is, when not where the search had it.
        dashboard: attach figures and a Pareto-table note to the study for optuna-dashboard.
        print_fn: progress output (default: a rich console).

    Raises:
        ExportError: no study, unknown study, no COMPLETE trial, data that cannot be loaded.

    Example:
        >>> from search.export import export_run
        >>> result = export_run("runs/nin")  # doctest: +SKIP
        >>> [c.schedule_id for c in result.configs]  # doctest: +SKIP
        ['nin:1-1-1-1-1-1-1-1-1', 'nin:1-1-1-8-1-1-4-1-1']
    """
    target = locate_run(run_dir, study)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    return export_study(
        target.storage_url, target.study_name, out, run_dir=target.run_dir, onnx=onnx, test=test,
        data_root=data_root, dashboard=dashboard, print_fn=print_fn,
    )  # fmt: skip


def export_study(
    storage_url: str,
    study_name: str | None,
    out_dir: str | Path,
    *,
    run_dir: str | Path | None = None,
    onnx: bool = False,
    test: bool = True,
    data_root: str | Path | None = None,
    dashboard: bool = True,
    print_fn: Callable[[Any], None] | None = None,
) -> ExportResult:
    """Export the Pareto set of study ``study_name`` in ``storage_url`` into ``out_dir``.

    Weights are looked up from each trial's ``weights`` attribute (relative to the run folder):
    ``run_dir`` if given, else the folder of an SQLite database, else ``runs/<run name>``.

    Raises:
        ExportError: see :func:`export_run`.
    """
    import optuna  # noqa: PLC0415

    say = print_fn or _console_print()
    if onnx:
        try:
            import onnx as _onnx  # noqa: F401, PLC0415
            import onnxruntime as _ort  # noqa: F401, PLC0415
        except ImportError:
            raise ExportError("--onnx needs the onnx and onnxruntime packages: pip install 'deeproots[onnx]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    view = open_run(storage_url, study_name, run_dir)  # one consistent view: later trials wait for the next export
    out = Path(out_dir)
    from ._confirmed import apply_confirmed, confirmation_lines, confirmed_rows, load_confirmation  # noqa: PLC0415

    confirmation = load_confirmation(view)
    trials = {t.number: TrialView(t) for t in view.study.get_trials(deepcopy=False)}
    if confirmation is not None:  # the confirmed front: mean over seeds at the confirmation's fidelity
        front, sources = confirmed_rows(view, confirmation)
    else:
        front = pareto_rows(view.study)
        sources = [trials[row["number"]] for row in front]
    out.mkdir(parents=True, exist_ok=True)
    say(f"exporting {len(front)} {'confirmed ' if confirmation else ''}Pareto-optimal schedule(s) of study {view.name!r} "
        f"({storage_url}) to {out}/")  # fmt: skip
    lines = confirmation_lines(confirmation, view.paper)
    for line in (part for item in lines for part in item.splitlines()):
        say(f"  {line}")

    files: dict[str, Path] = {}
    configs = [_write_model_files(view, out, row, src, files, say) for row, src in zip(front, sources)]
    data = _evaluate_models(view, out, configs, files, test=test, onnx=onnx, data_root=data_root, say=say)
    if confirmation is not None:
        apply_confirmed(view, confirmation, configs, test=test, data=data, device=eval_device(), say=say, data_root=data_root)

    rows = [csv_row(c) for c in configs]
    files["pareto.csv"] = write_csv(out / "pareto.csv", rows)

    from ._plots import attach_to_study, write_figures  # noqa: PLC0415

    figs = write_figures(view, out, pareto_ids={c.schedule_id for c in configs})
    files.update({p.name: p for p in figs["files"].values()})
    result = ExportResult(out, storage_url, view.name, configs, rows, files, figs["hypervolume"], lines)
    report_path = out / "report.md"
    report_path.write_text(report(view, result))
    files["report.md"] = report_path
    if dashboard:
        attach_to_study(view.live, figs["figures"], note(result, view))
    _write_manifest(out, files, view.time)
    say(summary_table(rows))
    say(f"wrote {out}/ ({len(rows)} model(s): YAML + safetensors{' + ONNX' if onnx else ''}; pareto.csv, report.md, "
        f"figures){'; figures and a note attached to the study for optuna-dashboard' if dashboard else ''}")  # fmt: skip
    say(f"dashboard: optuna-dashboard {shlex.quote(storage_url)}")
    return result


def _pct(part: Any, whole: Any) -> float | None:
    try:
        return round(100.0 * float(part) / float(whole), 1)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _copy_weights(src: Path, dst: Path) -> None:
    if src.resolve() != dst.resolve():
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)  # a reader never sees half a file


def _fetch_weights(view: RunView, t: TrialView, dst: Path, say: Callable[[Any], None]) -> bool:
    """Copy trial ``t``'s final weights to ``dst`` from its final checkpoint (or, for a study made
    before checkpoints, its weights file); False when there are none to copy."""
    try:
        ckpt = final_checkpoint(t, view.bases)
        if ckpt is not None:
            with ckpt.as_directory() as folder:
                src = Path(folder) / TrialFiles.WEIGHTS
                if src.is_file():
                    _copy_weights(src, dst)
                    return True
            say(f"  warning: checkpoint {t.checkpoint} of trial #{t.number} holds no {TrialFiles.WEIGHTS} (not a final checkpoint)")
            return False
    except Exception as e:  # noqa: BLE001 (an unreachable object store, a deleted folder: one line, export the rest)
        say(f"  warning: cannot read checkpoint {t.checkpoint} of trial #{t.number}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return False
    legacy = find_weights(t, view.bases, view.name)
    if legacy is None:
        return False
    _copy_weights(legacy, dst)
    return True


def _write_model_files(
    view: RunView, out: Path, row: dict[str, Any], t: TrialView, files: dict[str, Path], say: Callable[[Any], None]
) -> ExportedConfig:
    """Copy one Pareto trial's weights into the export and write its YAML (test metrics come later)."""
    import deeproots  # noqa: PLC0415

    meta = view.meta
    sid = row["schedule_id"]
    stem = weights_stem(sid)
    weights_dst = out / f"{stem}.safetensors"
    sha = None
    if _fetch_weights(view, t, weights_dst, say):
        sha = sha256_file(weights_dst)
        files[weights_dst.name] = weights_dst
    else:
        say(f"  warning: no weights for {sid} (trial #{t.number}, checkpoint {t.checkpoint or t.weights!r}); exported without them")
    groups = t.groups or dict(deeproots.resolve_schedule(meta.arch, sid, meta.num_classes).groups)
    objectives = {o: row.get(o) for o in meta.objectives}
    for o in ("flops", "params"):
        if objectives.get(o) is not None:
            objectives[o] = int(objectives[o])
    orig = view.orig_cost
    cfg = ExportedConfig(
        arch=meta.arch, schedule_id=sid, groups=groups, num_classes=meta.num_classes, input_size=meta.input_size,
        schedule_name=row.get("seed") or view.paper.get(sid), model_options=dict(meta.model_options),
        weights=weights_dst.name if sha else None, weights_sha256=sha, objectives=objectives,
        metrics={
            "val_accuracy": row.get("val_accuracy", t.val_accuracy),
            "val_accuracy_se": standard_error(t, row.get("val_accuracy", t.val_accuracy), meta.data_config.get("val_size")),
            "flops": t.flops if t.flops is not None else objectives.get("flops"),
            "params": t.params if t.params is not None else objectives.get("params"),
            "latency_ms": t.latency_ms,
            "flops_vs_orig_percent": _pct(t.flops, orig.flops if orig else None),
            "params_vs_orig_percent": _pct(t.params, orig.params if orig else None),
            "val_accuracy_per_epoch": t.accuracy_per_epoch or None,
            "epochs_trained": t.get(Attr.EPOCHS_TRAINED, meta.train_config.get("epochs")),
            "images_per_second": t.get(Attr.IMAGES_PER_SECOND),
            "train_seconds": t.get(Attr.TRAIN_SECONDS),
            "device": t.get(Attr.DEVICE),
        },
        training=dict(meta.train_config),
        data=meta.data_config,
        search={
            "run": meta.run_name, "study": view.name, "storage": view.storage_url, "trial": t.number,
            "outcome": t.outcome, "fidelity_key": meta.fidelity_key, "sampler": meta.sampler,
            "objectives": list(meta.objectives),
        },
        provenance={
            "trained_with": {k: t.get(k) for k in (Attr.DEEPROOTS_VERSION, Attr.GIT_REVISION, Attr.TORCH, Attr.HOST)},
            "exported_with": {**{k: view.provenance.get(k) for k in ("deeproots", "git_revision", "torch", "python", "host")},
                              "time": view.time},  # fmt: skip
        },
    )  # fmt: skip
    path = cfg.write(out / f"{stem}.yaml")
    files[path.name] = path
    return cfg


def _evaluate_models(
    view: RunView, out: Path, configs: list[ExportedConfig], files: dict[str, Path], *, test: bool, onnx: bool,
    data_root: str | Path | None, say: Callable[[Any], None],
) -> Any:  # fmt: skip
    """Rebuild every exported model from its files, test it (cached by weights), write ONNX; the data loaded, or None."""
    from deeproots._exported import load_exported  # noqa: PLC0415

    cache = EvaluationCache(out)
    with_weights = [c for c in configs if c.weights]
    data = None
    todo = [c for c in with_weights if test and cache.get(c) is None]
    if todo or (onnx and with_weights):
        say(f"  loading {view.meta.data_config.get('name', 'the data')} for the test-set evaluation ...")
        data = load_test_data(view.meta.data_config, data_root)
    device = eval_device()
    if todo:
        say(f"  evaluating {len(todo)} model(s) on {len(data.test):,} test images on {device}"
            + (f" ({len(with_weights) - len(todo)} evaluated by an earlier export)" if len(todo) < len(with_weights) else ""))  # fmt: skip
    spent: list[float] = []  # seconds per model evaluated now: the ETA
    for i, cfg in enumerate(with_weights, 1):
        model = load_exported(cfg.path)  # the files load, and params/FLOPs equal the recorded ones
        hit = cache.get(cfg)
        label = f" ({cfg.schedule_name})" if cfg.schedule_name else ""
        if test and hit is not None:
            cfg.metrics.update(hit["metrics"])
        elif test:
            started = time.perf_counter()
            cfg.metrics.update(evaluate_model(model, data, device))
            spent.append(time.perf_counter() - started)
            left = sum(1 for c in with_weights[i:] if cache.get(c) is None)
            eta = f", ETA ~{duration(left * sum(spent) / len(spent))}" if left else ""
            m = cfg.metrics
            again, recorded = m.get("val_accuracy_reevaluated"), m.get("val_accuracy")
            say(f"  [{i}/{len(with_weights)}] {cfg.schedule_id}{label}: val {recorded:.4f} "
                f"(re-evaluated {again if again is not None else float('nan'):.4f}), test {m['test_accuracy']:.4f} "
                f"({duration(spent[-1])}{eta})")  # fmt: skip
            if again is not None and recorded is not None and abs(again - recorded) > VAL_TOLERANCE:
                say(f"  warning: {cfg.schedule_id}: validation accuracy re-evaluated {again:.4f}, "
                    f"recorded {recorded:.4f} -- are these the trial's final weights?")  # fmt: skip
        if onnx:
            onnx_path = cfg.path.with_suffix(".onnx")
            if hit is not None and hit.get("onnx") and onnx_path.is_file():
                cfg.onnx = hit["onnx"]
            else:
                cfg.onnx = export_onnx(model, data, onnx_path, device)
            files[onnx_path.name] = onnx_path
        cfg.write(cfg.path)
        cache.put(cfg)
    cache.save()
    return data


def _write_manifest(out: Path, files: dict[str, Path], when: str) -> None:
    """Record what this export wrote; remove files an earlier export wrote that are not current."""
    manifest = out / "manifest.json"
    try:
        old = set(json.loads(manifest.read_text()).get("files", []))
    except (OSError, ValueError):
        old = set()
    current = {p.name for p in files.values()} | ({"plotly.min.js"} if (out / "plotly.min.js").exists() else set())
    for stale in sorted(old - current):
        if "/" not in stale and stale not in ("manifest.json",):
            (out / stale).unlink(missing_ok=True)
    manifest.write_text(json.dumps({"files": sorted(current), "written": when or time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
