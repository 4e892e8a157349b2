"""The export step: a study's Pareto set out as files a user keeps.

For every Pareto-optimal schedule (one per schedule; duplicates folded into the trial that trained
it) ``RUN/export/`` gets

* ``<id>.yaml`` -- architecture, full schedule and id, objective values, the trainer config and the
  data it was trained on, the study/trial it came from, provenance (read by
  :func:`deeproots.load_exported` and ``python -m deeproots.train --config``);
* ``<id>.safetensors`` -- the trial's final weights, copied from ``RUN/weights/<study>/``, with
  their SHA-256 in the YAML (nothing is ever unpickled);
* ``<id>.onnx`` with ``--onnx`` -- checked against PyTorch's output on one test batch;

and, for the whole set, ``pareto.csv``, ``report.md``, the figures (:mod:`search._plots`) and a
``manifest.json`` of what was written (a later export removes files of schedules that left the
front). Each exported model is rebuilt with :func:`deeproots.load_exported` -- proving the files
load and that their parameters and FLOPs equal the recorded ones -- and evaluated once on the
**test set**, never used by the search, and once more on the validation split as a check that the
weights are the ones that scored the recorded validation accuracy. Results are cached by the
weights' SHA-256, so exporting again (e.g. while the search still runs) only evaluates new models.

The study is only read, except for the figures and a note with the Pareto table, which are
attached to it for optuna-dashboard (``dashboard=False`` skips that). SQLite storage is opened as
the search opens it (WAL, long lock timeout), so exporting while a search writes is safe.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["ExportError", "ExportResult", "export_run", "export_study", "locate_run"]

_CSV_COLUMNS = [
    "schedule_id", "name", "trial", "val_accuracy", "test_accuracy", "flops", "flops_vs_orig",
    "params", "params_vs_orig", "latency_ms", "epochs", "config", "weights", "onnx",
]  # fmt: skip


#: Largest |recorded - re-evaluated| validation accuracy accepted silently (0.5 points: bf16 on GPU).
_VAL_TOLERANCE = 0.005


class ExportError(ValueError):
    """Bad input for the export (no study, unknown study, empty study, missing data): one line."""


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: the export folder.
        storage_url: the study's storage.
        study_name: the study.
        rows: one dict per exported schedule (the ``pareto.csv`` rows plus ``record``, the YAML).
        files: name -> path of everything written.
        hypervolume: normalised hypervolume of the study's COMPLETE trials (see :mod:`search._plots`).
    """

    out_dir: Path
    storage_url: str
    study_name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    hypervolume: float = 0.0


# ----------------------------------------------------------------------------------- locating


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        u = make_url(url)
    except ArgumentError:
        raise ExportError(f"not an SQLAlchemy URL: {url!r} (e.g. sqlite:///runs/nin/study.db)") from None
    if u.get_backend_name() != "sqlite":
        return None
    return Path(u.database or "")


@dataclass(frozen=True)
class _Target:
    storage_url: str
    study_name: str | None
    run_dir: Path | None


def locate_run(run_dir: str | Path, study: str | None = None) -> _Target:
    """Storage URL and study of a run folder (``run.json``; else its ``study.db``).

    A relative SQLite URL recorded by a search started elsewhere is resolved against the folder.

    Raises:
        ExportError: not a folder, or it holds no study.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ExportError(f"{root}: no such run folder")
    run_file = root / "run.json"
    url, name = None, study
    if run_file.is_file():
        try:
            doc = json.loads(run_file.read_text())
            url, name = doc.get("storage"), study or doc.get("study_name")
        except (OSError, ValueError):
            url = None
    if url is not None:
        path = _sqlite_file(url)
        if path is not None and not path.is_file() and (root / "study.db").is_file():
            url = f"sqlite:///{(root / 'study.db').as_posix()}"  # the run folder moved or cwd differs
    elif (root / "study.db").is_file():
        url = f"sqlite:///{(root / 'study.db').as_posix()}"
    else:
        raise ExportError(f"{root}: holds no study (no run.json, no study.db); pass a run folder such as runs/nin")
    return _Target(url, name, root)


def _open(url: str) -> optuna.storages.BaseStorage:
    """The storage, opened as the search opens it; never creates an SQLite file."""
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise ExportError(f"no study database at {path}")
    from ._study import open_storage  # noqa: PLC0415

    try:
        return open_storage(url)
    except Exception as e:  # noqa: BLE001 (driver errors: one line)
        raise ExportError(f"cannot open {url}: {str(e).splitlines()[0]}") from None


def _load_study(storage: optuna.storages.BaseStorage, url: str, name: str | None) -> optuna.Study:
    names = [s.study_name for s in storage.get_all_studies()]
    if not names:
        raise ExportError(f"{url} holds no study")
    if name is None:
        if len(names) > 1:
            raise ExportError(f"{url} holds {len(names)} studies ({', '.join(names)}); pick one with --study")
        name = names[0]
    if name not in names:
        raise ExportError(f"no study {name!r} in {url}; it holds: {', '.join(names)}")
    study = optuna.load_study(study_name=name, storage=storage)
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        states = ", ".join(f"{k} {v}" for k, v in sorted(_state_counts(study).items())) or "no trials"
        raise ExportError(f"study {name!r} has no COMPLETE trial yet ({states}): nothing to export")
    return study


def _state_counts(study: optuna.Study) -> dict[str, int]:
    from ._report import state_counts  # noqa: PLC0415

    return state_counts(study)


# ----------------------------------------------------------------------------------- helpers


def _console_print() -> Callable[[Any], None]:
    from rich.console import Console  # noqa: PLC0415

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # a log file: do not squeeze the tables into 80 columns
        console = Console(highlight=False, soft_wrap=True, width=160)
    return console.print


def _stem(schedule_id: str) -> str:
    from ._trainable import weights_filename  # noqa: PLC0415

    return weights_filename(schedule_id).removesuffix(".safetensors")


def _find_weights(trial: FrozenTrial, bases: list[Path], study_name: str) -> Path | None:
    """The trial's final weights: its ``weights`` attribute against each candidate run folder."""
    rel = trial.user_attrs.get("weights")
    sid = trial.user_attrs.get("schedule_id", "")
    candidates: list[Path] = []
    for base in bases:
        if rel:
            candidates.append(Path(rel) if Path(rel).is_absolute() else base / rel)
        if sid:
            candidates.append(base / "weights" / study_name / f"{_stem(sid)}.safetensors")
    return next((c for c in candidates if c.is_file()), None)


def _space_of(study: optuna.Study) -> dict[str, Any]:
    space = study.user_attrs.get("space")
    return space if isinstance(space, dict) else {}


def _train_config(study: optuna.Study, space: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The trainer config the trials used, and where it comes from.

    A study attribute ``train_config`` (the resolved ``TrainConfig``) is the record; without it the
    space's ``trainer:`` keys are resolved with this installation's ``TrainConfig`` defaults (which
    match the trials' unless the defaults changed between search and export).
    """
    from deeproots.training import TrainConfig  # noqa: PLC0415

    recorded = study.user_attrs.get("train_config")
    if isinstance(recorded, dict):
        return dict(recorded), "study"
    try:
        return TrainConfig(**(space.get("trainer") or {})).to_dict(), "space + current TrainConfig defaults"
    except (TypeError, ValueError):
        return dict(space.get("trainer") or {}), "space"


def _geometry(space: dict[str, Any], arch: str) -> tuple[list[int], int]:
    """(input size, classes) the study's networks were built and costed for."""
    from ._config import SearchSpace, data_geometry  # noqa: PLC0415

    model = space.get("model") or {}
    size, classes = model.get("input_size"), model.get("num_classes")
    if size is None or classes is None:
        try:
            geo_size, geo_classes = data_geometry(SearchSpace.model_validate(space))
        except Exception:  # noqa: BLE001 (an old or partial space: the architecture's defaults below)
            geo_size, geo_classes = None, None
        size = size or geo_size
        classes = classes or geo_classes
    if size is None or classes is None:
        import torch  # noqa: PLC0415

        import deeproots  # noqa: PLC0415

        with torch.device("meta"):
            m = deeproots.build_model(arch)
        size = size or m.default_input_size
        classes = classes or getattr(m, "num_classes", None) or 10
    return [int(v) for v in size], int(classes)


def _orig_cost(arch: str, input_size: list[int], num_classes: int, options: dict[str, Any]) -> Any:
    import torch  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    with torch.device("meta"):
        model = deeproots.build_model(arch, "orig", num_classes=num_classes, **options)
    return deeproots.count_cost(model, tuple(input_size))


def _clean(value: Any) -> Any:
    """Plain YAML-safe data (nan -> None, tuples -> lists, numpy/torch scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__) are not plain YAML
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):
        return _clean(value.item())
    return str(value)


def _write_yaml(path: Path, record: dict[str, Any]) -> None:
    import yaml  # noqa: PLC0415

    header = (
        "# A Pareto-optimal schedule exported by `python -m search.export` (deeproots).\n"
        "# Load: deeproots.load_exported(this file).  Retrain at a full budget:\n"
        f"#   python -m deeproots.train --config {path.as_posix()} --epochs N --seeds K\n"
    )
    text = header + yaml.safe_dump(_clean(record), sort_keys=False, default_flow_style=None, width=110)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_data(space: dict[str, Any], data_root: str | Path | None) -> Any:
    from deeproots.data import load_data  # noqa: PLC0415

    d = dict(space.get("data") or {})
    if not d:
        raise ExportError("the study records no data config (study attribute 'space'); use --no-test")
    root = data_root if data_root is not None else d.get("root")
    try:
        return load_data(
            d.get("name", "cifar10"), root, subset=d.get("subset"), val_size=int(d.get("val_size", 5000)),
            seed=int(d.get("seed", 0)), download=False, **(d.get("options") or {}),
        )  # fmt: skip
    except (OSError, ValueError, ConnectionError) as e:
        where = f" (data root {root})" if root else ""
        raise ExportError(
            f"cannot load the test data{where}: {str(e).splitlines()[0]}; pass --data-root PATH, or --no-test"
        ) from None


def _eval_device() -> str:
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def _evaluate(model: Any, data: Any, device: str) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    from deeproots.training import TrainConfig, evaluate  # noqa: PLC0415

    cfg = TrainConfig(bf16=False)  # full precision: the check against the recorded accuracy is exact on CPU
    model = model.to(device=device, memory_format=torch.channels_last)
    start = time.perf_counter()
    test_loss, test_acc = evaluate(model, data.test, cfg, device=device)
    out = {"test_accuracy": test_acc, "test_loss": test_loss, "test_images": len(data.test)}
    if data.val is not None and len(data.val):
        _, val_acc = evaluate(model, data.val, cfg, device=device)
        out["val_accuracy_reevaluated"] = val_acc
    out["eval_device"] = device
    out["eval_seconds"] = round(time.perf_counter() - start, 2)
    return out


def _export_onnx(model: Any, data: Any, path: Path, device: str) -> dict[str, Any]:
    """Write ``path`` and compare onnxruntime's logits with PyTorch's on one test batch."""
    import warnings  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    images, _ = next(iter(data.test.batches(min(16, len(data.test)), device="cpu")))
    try:
        import onnxscript  # noqa: F401, PLC0415

        dynamo = True
    except ImportError:  # the TorchScript exporter needs no extra package
        dynamo = False
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"], "dynamo": dynamo}
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs.update(opset_version=17, dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        torch.onnx.export(model, (images[:1],), str(tmp), **kwargs)
    onnx.checker.check_model(onnx.load(str(tmp)))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(images).float().numpy()
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max()) or 1.0
    agree = float((got.argmax(1) == expected.argmax(1)).mean())
    if diff > 1e-3 * max(1.0, scale):
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX output differs from PyTorch's by {diff:.3g} (max |logit| {scale:.3g})")
    os.replace(tmp, path)
    return {"file": path.name, "exporter": "dynamo" if dynamo else "torchscript", "opset": 17 if not dynamo else None,
            "check_batch": int(images.shape[0]), "max_abs_diff": diff, "argmax_agreement": agree}  # fmt: skip


def _pct(part: Any, whole: Any) -> float | None:
    try:
        return round(100.0 * float(part) / float(whole), 1)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


# ----------------------------------------------------------------------------------- export


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
        >>> [r["schedule_id"] for r in result.rows]  # doctest: +SKIP
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
    from ._report import pareto_rows  # noqa: PLC0415

    say = print_fn or _console_print()
    if onnx:
        try:
            import onnx as _onnx  # noqa: F401, PLC0415
            import onnxruntime as _ort  # noqa: F401, PLC0415
        except ImportError:
            raise ExportError("--onnx needs the onnx and onnxruntime packages: pip install 'deeproots[onnx]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _open(storage_url)
    live = _load_study(storage, storage_url, study_name)
    study = _snapshot(live)  # one consistent view: trials a running search adds meanwhile wait for the next export
    ctx = _Context.of(study, storage_url, Path(out_dir), run_dir)
    front = pareto_rows(study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    ctx.out.mkdir(parents=True, exist_ok=True)
    say(f"exporting {len(front)} Pareto-optimal schedule(s) of study {ctx.name!r} ({storage_url}) to {ctx.out}/")

    files: dict[str, Path] = {}
    items = [_write_model_files(ctx, row, trials[row["number"]], files, say) for row in front]
    _evaluate_models(ctx, items, files, test=test, onnx=onnx, data_root=data_root, say=say)

    rows = [_csv_row(it) for it in items]
    for row, it in zip(rows, items):
        row["record"] = it["record"]
    files["pareto.csv"] = _write_csv(ctx.out / "pareto.csv", rows)

    from ._plots import attach_to_study, write_figures  # noqa: PLC0415

    figs = write_figures(
        study, ctx.out, pareto_ids={it["record"]["schedule"]["id"] for it in items}, arch=ctx.arch,
        input_size=ctx.input_size, num_classes=ctx.num_classes,
    )  # fmt: skip
    files.update({p.name: p for p in figs["files"].values()})
    result = ExportResult(ctx.out, storage_url, ctx.name, rows, files, figs["hypervolume"])
    report_path = ctx.out / "report.md"
    report_path.write_text(_report(ctx, result))
    files["report.md"] = report_path
    if dashboard:
        attach_to_study(live, figs["figures"], _note(result, ctx.objectives))
    _write_manifest(ctx.out, files)
    say(_summary_table(rows))
    say(f"wrote {ctx.out}/ ({len(rows)} model(s): YAML + safetensors{' + ONNX' if onnx else ''}; pareto.csv, report.md, "
        f"figures){'; figures and a note attached to the study for optuna-dashboard' if dashboard else ''}")  # fmt: skip
    say(f"dashboard: optuna-dashboard {storage_url}")
    return result


def _snapshot(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study`` (attributes and trials), read once from its storage."""
    memory = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=memory)
    return optuna.load_study(study_name=study.study_name, storage=memory)


@dataclass
class _Context:
    """What every exported model of one study shares."""

    study: optuna.Study
    storage_url: str
    out: Path
    run_dir: Path | None
    bases: list[Path]
    space: dict[str, Any]
    objectives: list[str]
    arch: str | None
    input_size: list[int] | None
    num_classes: int | None
    orig_cost: Any
    paper: dict[str, str]
    provenance: dict[str, Any]
    exported_at: str

    @property
    def name(self) -> str:
        return self.study.study_name

    @classmethod
    def of(cls, study: optuna.Study, storage_url: str, out: Path, run_dir: str | Path | None) -> _Context:
        import deeproots  # noqa: PLC0415

        from ._plots import _paper_names  # noqa: PLC0415

        space = _space_of(study)
        bases = [Path(run_dir)] if run_dir is not None else []
        db = _sqlite_file(storage_url)
        if db is not None:
            bases.append(db.parent)
        if study.user_attrs.get("run_name"):
            bases.append(Path("runs") / study.user_attrs["run_name"])
        first = next((t for t in study.best_trials), None)
        arch = (first.user_attrs.get("arch") or str(first.user_attrs.get("schedule_id", ":")).split(":")[0]) if first else None
        arch = arch or (space.get("model") or {}).get("arch")
        input_size, num_classes, orig = None, None, None
        if arch:
            input_size, num_classes = _geometry(space, arch)
            try:
                orig = _orig_cost(arch, input_size, num_classes, (space.get("model") or {}).get("options") or {})
            except Exception:  # noqa: BLE001 (the "% of orig" columns are a nicety)
                orig = None
        return cls(
            study=study, storage_url=storage_url, out=out, run_dir=Path(run_dir) if run_dir is not None else None,
            bases=bases, space=space, objectives=list(study.metric_names or []), arch=arch, input_size=input_size,
            num_classes=num_classes, orig_cost=orig, paper=_paper_names(arch), provenance=deeproots.provenance(),
            exported_at=time.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip


def _copy_weights(src: Path, dst: Path) -> None:
    if src.resolve() != dst.resolve():
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)  # a reader never sees half a file


def _write_model_files(
    ctx: _Context, row: dict[str, Any], t: FrozenTrial, files: dict[str, Path], say: Callable[[Any], None]
) -> dict[str, Any]:
    """Copy one Pareto trial's weights into the export and write its YAML (metrics come later)."""
    import deeproots  # noqa: PLC0415
    from deeproots._exported import EXPORT_FORMAT, sha256_file  # noqa: PLC0415

    sid = row["schedule_id"]
    arch = t.user_attrs.get("arch") or ctx.arch or sid.split(":", 1)[0]
    stem = _stem(sid)
    weights_src = _find_weights(t, ctx.bases, ctx.name)
    weights_dst = ctx.out / f"{stem}.safetensors"
    sha = None
    if weights_src is not None:
        _copy_weights(weights_src, weights_dst)
        sha = sha256_file(weights_dst)
        files[weights_dst.name] = weights_dst
    else:
        say(f"  warning: no weights for {sid} (trial #{t.number}, weights attribute {t.user_attrs.get('weights')!r}); "
            "exported without them")  # fmt: skip
    groups = t.user_attrs.get("schedule") or dict(deeproots.resolve_schedule(arch, sid, ctx.num_classes).groups)
    objectives = {o: row.get(o) for o in ctx.objectives}
    for o in ("flops", "params"):
        if objectives.get(o) is not None:
            objectives[o] = int(objectives[o])
    label = row.get("seed") or ctx.paper.get(sid)
    attrs = t.user_attrs
    train_cfg, train_source = _train_config(ctx.study, ctx.space)
    orig = ctx.orig_cost
    record: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "arch": arch,
        "schedule": {"id": sid, "name": label, "groups": dict(groups)},
        "num_classes": ctx.num_classes,
        "input_size": list(ctx.input_size or []),
        "model_options": dict((ctx.space.get("model") or {}).get("options") or {}),
        "weights": weights_dst.name if sha else None,
        "weights_sha256": sha,
        "objectives": objectives,
        "metrics": {
            "val_accuracy": row.get("val_accuracy", attrs.get("val_accuracy")),
            "flops": attrs.get("flops", objectives.get("flops")),
            "params": attrs.get("params", objectives.get("params")),
            "latency_ms": attrs.get("latency_ms"),
            "flops_vs_orig_percent": _pct(attrs.get("flops"), orig.flops if orig else None),
            "params_vs_orig_percent": _pct(attrs.get("params"), orig.params if orig else None),
            "val_accuracy_per_epoch": attrs.get("val_accuracy_per_epoch"),
            "epochs_trained": attrs.get("epochs_trained", train_cfg.get("epochs")),
            "images_per_second": attrs.get("images_per_second"),
            "train_seconds": attrs.get("train_seconds"),
            "device": attrs.get("device"),
        },
        "training": train_cfg,  # deeproots.TrainConfig(**training) rebuilds the trial's recipe
        "data": dict(ctx.space.get("data") or {}),
        "search": {
            "run": ctx.study.user_attrs.get("run_name"),
            "study": ctx.name,
            "storage": ctx.storage_url,
            "trial": t.number,
            "outcome": attrs.get("outcome"),
            "fidelity_key": ctx.study.user_attrs.get("fidelity_key"),
            "sampler": (ctx.space.get("search") or {}).get("sampler"),
            "objectives": ctx.objectives,
            "training_from": train_source,
        },
        "provenance": {
            "trained_with": {k: attrs.get(k) for k in ("deeproots_version", "git_revision", "torch", "host")},
            "exported_with": {**{k: ctx.provenance.get(k) for k in ("deeproots", "git_revision", "torch", "python", "host")},
                              "time": ctx.exported_at},  # fmt: skip
        },
    }
    yaml_path = ctx.out / f"{stem}.yaml"
    _write_yaml(yaml_path, record)
    files[yaml_path.name] = yaml_path
    return {"record": record, "yaml": yaml_path, "trial": t, "label": label}


def _evaluate_models(
    ctx: _Context, items: list[dict[str, Any]], files: dict[str, Path], *, test: bool, onnx: bool,
    data_root: str | Path | None, say: Callable[[Any], None],
) -> None:  # fmt: skip
    """Rebuild every exported model from its files, test it (cached by weights), write ONNX."""
    from deeproots._exported import load_exported  # noqa: PLC0415

    cache = _read_cache(ctx.out)
    with_weights = [it for it in items if it["record"]["weights"]]
    data = None
    if (test and any(_cached(cache, it["record"]) is None for it in with_weights)) or (onnx and with_weights):
        say(f"  loading {ctx.space.get('data', {}).get('name', 'the data')} for the test-set evaluation ...")
        data = _load_data(ctx.space, data_root)
    device = _eval_device()
    for it in with_weights:
        rec = it["record"]
        model = load_exported(it["yaml"])  # the files load, and params/FLOPs equal the recorded ones
        hit = _cached(cache, rec)
        if test and hit is not None:
            rec["metrics"].update(hit["metrics"])
        elif test:
            rec["metrics"].update(_evaluate(model, data, device))
            m = rec["metrics"]
            again, recorded = m.get("val_accuracy_reevaluated"), m.get("val_accuracy")
            say(f"  {rec['schedule']['id']}{' (' + it['label'] + ')' if it['label'] else ''}: val {recorded:.4f} "
                f"(re-evaluated {again if again is not None else float('nan'):.4f}), test {m['test_accuracy']:.4f}")  # fmt: skip
            if again is not None and recorded is not None and abs(again - recorded) > _VAL_TOLERANCE:
                say(f"  warning: {rec['schedule']['id']}: validation accuracy re-evaluated {again:.4f}, "
                    f"recorded {recorded:.4f} -- are these the trial's final weights?")  # fmt: skip
        if onnx:
            onnx_path = it["yaml"].with_suffix(".onnx")
            if hit is not None and hit.get("onnx") and onnx_path.is_file():
                rec["onnx"] = hit["onnx"]
            else:
                rec["onnx"] = _export_onnx(model, data, onnx_path, device)
            files[onnx_path.name] = onnx_path
        _write_yaml(it["yaml"], rec)
    _write_cache(ctx.out, items)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in _CSV_COLUMNS})
    return path


# ----------------------------------------------------------------------------------- cache / manifest


def _cache_key(record: dict[str, Any]) -> str:
    return json.dumps([record.get("weights_sha256"), record.get("data")], sort_keys=True)


def _read_cache(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / ".evaluations.json").read_text())
    except (OSError, ValueError):
        return {}


def _cached(cache: dict[str, Any], record: dict[str, Any]) -> dict[str, Any] | None:
    hit = cache.get(_cache_key(record))
    if not hit or "test_accuracy" not in hit.get("metrics", {}):
        return None
    return hit


def _write_cache(out: Path, results: list[dict[str, Any]]) -> None:
    cache = _read_cache(out)
    keep = ("test_accuracy", "test_loss", "test_images", "val_accuracy_reevaluated", "eval_device", "eval_seconds")
    for r in results:
        rec = r["record"]
        if rec.get("weights_sha256") and "test_accuracy" in rec["metrics"]:
            cache[_cache_key(rec)] = {"metrics": {k: rec["metrics"][k] for k in keep if k in rec["metrics"]},
                                      "onnx": rec.get("onnx")}  # fmt: skip
    tmp = out / ".evaluations.json.tmp"
    tmp.write_text(json.dumps(_clean(cache), indent=1))
    os.replace(tmp, out / ".evaluations.json")


def _write_manifest(out: Path, files: dict[str, Path]) -> None:
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
    manifest.write_text(json.dumps({"files": sorted(current), "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))


# ----------------------------------------------------------------------------------- tables


def _csv_row(r: dict[str, Any]) -> dict[str, Any]:
    """One ``pareto.csv`` row of an exported model."""
    rec = r["record"]
    m = rec["metrics"]
    return {
        "schedule_id": rec["schedule"]["id"],
        "name": rec["schedule"]["name"] or "",
        "trial": rec["search"]["trial"],
        "val_accuracy": m.get("val_accuracy"),
        "test_accuracy": m.get("test_accuracy"),
        "flops": m.get("flops"),
        "flops_vs_orig": m.get("flops_vs_orig_percent"),
        "params": m.get("params"),
        "params_vs_orig": m.get("params_vs_orig_percent"),
        "latency_ms": m.get("latency_ms"),
        "epochs": rec["metrics"].get("epochs_trained"),
        "config": r["yaml"].name,
        "weights": rec.get("weights") or "",
        "onnx": (rec.get("onnx") or {}).get("file", ""),
    }


def _fmt_acc(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.2f} %"


def _fmt_int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def _markdown_table(rows: list[dict[str, Any]], objectives: list[str], links: bool = True) -> str:
    head = ["schedule", "paper name", "val acc", "test acc", "FLOPs", "FLOPs vs orig", "params", "params vs orig"]
    lat = "latency_ms" in objectives or any(r.get("latency_ms") for r in rows)
    if lat:
        head.append("latency (ms)")
    head.append("config")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head) - 1)) + "|---|"]
    for r in rows:
        cells = [
            f"`{r['schedule_id']}`", r["name"] or "", _fmt_acc(r["val_accuracy"]), _fmt_acc(r["test_accuracy"]),
            _fmt_int(r["flops"]), "-" if r["flops_vs_orig"] is None else f"{r['flops_vs_orig']} %",
            _fmt_int(r["params"]), "-" if r["params_vs_orig"] is None else f"{r['params_vs_orig']} %",
        ]  # fmt: skip
        if lat:
            cells.append("-" if r.get("latency_ms") is None else f"{r['latency_ms']:.3f}")
        cells.append(f"[{r['config']}]({r['config']})" if links else r["config"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(ctx: _Context, result: ExportResult) -> str:
    """``report.md``: what was searched, the Pareto table with test accuracy, figures, how to use it."""
    from ._report import outcome_counts  # noqa: PLC0415

    study, space, objectives, prov = ctx.study, ctx.space, ctx.objectives, ctx.provenance
    counts, outcomes, orig_cost = _state_counts(study), outcome_counts(study), ctx.orig_cost
    data = space.get("data") or {}
    trainer, _ = _train_config(study, space)
    rows = result.rows
    checks = [
        (r["record"]["metrics"].get("val_accuracy"), r["record"]["metrics"].get("val_accuracy_reevaluated"))
        for r in rows
    ]
    checks = [(a, b) for a, b in checks if a is not None and b is not None]
    evaluated = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("outcome") in ("evaluated", "early_stopped"))
    lines = [
        f"# Pareto set of study `{study.study_name}`",
        "",
        f"Exported {ctx.exported_at} by deeproots {prov.get('deeproots')} (git {prov.get('git_revision') or '-'}), "
        f"torch {prov.get('torch')}, from `{result.storage_url}`.",
        "",
        f"- trials: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; outcomes: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}; distinct schedules trained: {evaluated}",
        f"- objectives: {', '.join(objectives)}; sampler: {(space.get('search') or {}).get('sampler', '-')}",
        f"- data: {data.get('name', '-')}, training subset {data.get('subset') or 'all'}, "
        f"{data.get('val_size', '-')} validation images (seed {data.get('seed', 0)}); the test set was not used by the search",
        f"- trainer: {trainer.get('epochs', '-')} epochs, batch {trainer.get('batch_size', '-')}, lr {trainer.get('lr', '-')} "
        f"({trainer.get('lr_schedule', '-')}); a search trains at low fidelity -- retrain a config at a full budget with "
        f"`python -m deeproots.train --config <config> --epochs N --seeds K`",
    ]
    if orig_cost is not None:
        lines.append(f"- ungrouped network (`orig`): {orig_cost.flops:,} FLOPs, {orig_cost.params:,} parameters (the 100 % of the table)")
    lines.append(f"- normalised hypervolume of all trials: {result.hypervolume:.4f} (see the module docstring of `search/_plots.py`)")
    lines += ["", f"## Pareto set ({len(rows)} schedules)", "", _markdown_table(rows, objectives), ""]
    lines.append(
        "val acc: final-epoch accuracy on the validation split, as recorded by the search; test acc: the exported "
        "weights on the test set, measured once at export."
    )
    if checks:
        worst = max(abs(a - b) for a, b in checks)
        if worst <= _VAL_TOLERANCE:
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
        diffs = [r["record"]["onnx"]["max_abs_diff"] for r in rows if r["record"].get("onnx")]
        lines.append(f"ONNX files agree with PyTorch on one test batch (largest |logit difference| {max(diffs):.2e}).")
    lines += ["", "## Figures", ""]
    for stem, title in (("accuracy_vs_flops", "accuracy vs FLOPs"), ("accuracy_vs_params", "accuracy vs parameters"),
                        ("accuracy_vs_latency", "accuracy vs latency"), ("hypervolume", "hypervolume over trials")):  # fmt: skip
        if f"{stem}.png" in result.files:
            html = f" ([interactive]({stem}.html))" if f"{stem}.html" in result.files else ""
            lines += [f"![{title}]({stem}.png){html}", ""]
    lines += [
        "Grey: every schedule evaluated (early-stopped ones as x at their partial accuracy); red: the Pareto set over "
        "all objectives; dashed: the front of the 2-D view; labels: the paper's named schedules.",
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
        f"optuna-dashboard {result.storage_url}",
        "```",
        "",
        "The figures above are attached to the study (the dashboard's study page) with this table as the study note.",
        "",
    ]
    return "\n".join(lines)


def _note(result: ExportResult, objectives: list[str]) -> str:
    return (
        f"## Pareto set ({len(result.rows)} schedules)\n\n"
        + _markdown_table(result.rows, objectives, links=False)
        + f"\n\nExported to `{result.out_dir.as_posix()}` ({time.strftime('%Y-%m-%d %H:%M:%S')}): one YAML + safetensors per "
        "schedule, `pareto.csv`, `report.md`. Test accuracy measured once at export. Load one with "
        "`deeproots.load_exported(path)`.\n"
    )


def _summary_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"exported Pareto set ({len(rows)} schedules)", title_justify="left")
    for col in ("trial", "schedule", "val acc", "test acc", "FLOPs", "params", "config"):
        table.add_column(col, justify="right" if col not in ("schedule", "config") else "left")
    for r in rows:
        label = r["schedule_id"] + (f" ({r['name']})" if r["name"] else "")
        table.add_row(str(r["trial"]), label, _fmt_acc(r["val_accuracy"]), _fmt_acc(r["test_accuracy"]),
                      _fmt_int(r["flops"]), _fmt_int(r["params"]), r["config"])  # fmt: skip
    return table
