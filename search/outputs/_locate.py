"""Finding and reading a run: its storage and study, one consistent in-memory view, its record.

A run folder's ``run.json`` names the storage and study (else its ``study.db`` is used). The
study is read once into memory (:func:`open_run`), so a search that keeps writing meanwhile does
not change the view half-way; everything the export needs to know about the search -- architecture,
geometry, trainer config, data -- comes from the study's run record
(:class:`search.engine.record.StudyMeta`), never from guesses on trial contents.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..engine.record import RecordError, StudyMeta, TrialView

if TYPE_CHECKING:
    import optuna

__all__ = ["ExportError", "RunTarget", "RunView", "locate_run", "open_run", "final_checkpoint", "find_weights", "trial_weights",
           "paper_names"]


class ExportError(ValueError):
    """Bad input for the export (no study, unknown study, empty study, missing data): one line."""


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL, None for another backend.

    Raises:
        ExportError: not an SQLAlchemy URL.
    """
    from ..engine._study_db import StorageError, sqlite_path  # noqa: PLC0415

    try:
        return sqlite_path(url)
    except StorageError as e:
        raise ExportError(str(e)) from None


@dataclass(frozen=True)
class RunTarget:
    """Where a run's study is: storage URL, study name (None: the only one), the run folder."""

    storage_url: str
    study_name: str | None
    run_dir: Path | None


def locate_run(run_dir: str | Path, study: str | None = None) -> RunTarget:
    """Storage URL and study of a run folder (``run.json``; else its ``study.db``).

    The folder's own database is read wherever the folder was copied or moved, whatever the working
    directory (:func:`search.engine._study.read_run`).

    Raises:
        ExportError: not a folder, a corrupt ``run.json``, or it holds no study.
    """
    from ..engine._study_db import StorageError, check_storage_url, sqlite_url  # noqa: PLC0415
    from ..engine._study import read_run  # noqa: PLC0415

    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise ExportError(f"{root} is a file, not a run folder; pass a run folder such as runs/nin")
    if not root.is_dir():
        raise ExportError(f"{root}: no such run folder")
    try:
        doc = read_run(root)
        if doc is not None:
            check_storage_url(doc["storage"])
    except StorageError as e:
        raise ExportError(str(e)) from None
    name = study
    if doc is not None:
        url, name = doc["storage"], study or doc.get("study_name")
    elif (root / "study.db").is_file():
        url = sqlite_url(root / "study.db")
    else:
        raise ExportError(f"{root}: holds no study (no run.json, no study.db); pass a run folder such as runs/nin")
    return RunTarget(url, name, root)


def _open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage, opened as the search opens it; never creates a file nor adds tables to a database
    that is not a study's (it is looked into read-only first)."""
    from ..engine._study_db import StorageError, check_study_storage  # noqa: PLC0415
    from ..engine._study import open_storage  # noqa: PLC0415

    try:
        check_study_storage(url)
    except StorageError as e:
        raise ExportError(str(e)) from None
    try:
        return open_storage(url)
    except Exception as e:  # noqa: BLE001 (driver errors: one line)
        raise ExportError(f"cannot open {url}: {str(e).splitlines()[0]}") from None


def paper_names(arch: str | None, num_classes: int | None = None) -> dict[str, str]:
    """Schedule id -> paper name for ``arch`` (first name wins when two coincide)."""
    if not arch:
        return {}
    import deeproots  # noqa: PLC0415

    try:
        named = deeproots.paper_schedules(arch, num_classes)
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for name, s in named.items():
        out.setdefault(s.id, name)
    return out


@dataclass
class RunView:
    """One consistent, in-memory view of a run's study and what every output of it shares.

    Attributes:
        study: an in-memory copy of the study (read once).
        live: the study in its storage (the export attaches figures and a note to it).
        storage_url: where it lives.
        run_dir: the run folder, when known.
        meta: the run record.
        bases: folders a trial's relative ``weights`` path may be relative to.
        orig_cost: ``deeproots.Cost`` of the ungrouped network (computed once), or None.
        paper: schedule id -> paper name.
        provenance: of this export.
        time: when the view was taken (local time, one stamp for every output of one export).
    """

    study: optuna.Study
    live: optuna.Study
    storage_url: str
    run_dir: Path | None
    meta: StudyMeta
    bases: list[Path] = field(default_factory=list)
    orig_cost: Any = None
    paper: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    time: str = ""

    @property
    def name(self) -> str:
        """The study name."""
        return self.study.study_name

    @property
    def objectives(self) -> list[str]:
        """Objective names in the study's order."""
        return list(self.meta.objectives)

    def trials(self) -> list[TrialView]:
        """Every trial, in order."""
        return [TrialView(t) for t in self.study.get_trials(deepcopy=False)]


def _orig_cost(meta: StudyMeta) -> Any:
    import torch  # noqa: PLC0415

    import deeproots  # noqa: PLC0415
    from deeproots._meta import shapes_only  # noqa: PLC0415

    with shapes_only():
        model = deeproots.build_model(meta.arch, "orig", num_classes=meta.num_classes, **meta.model_options)
    return deeproots.count_cost(model, meta.input_size)


def open_run(storage_url: str, study_name: str | None, run_dir: str | Path | None = None) -> RunView:
    """Read a study once into memory, with its run record and what every output needs.

    Raises:
        ExportError: no database, no study / an unknown one (naming the ones there), a study with no
            COMPLETE trial, or a study without a deeproots run record.
    """
    import optuna  # noqa: PLC0415
    from optuna.trial import TrialState  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    storage = _open_storage(storage_url)
    names = [s.study_name for s in storage.get_all_studies()]
    if not names:
        raise ExportError(f"{storage_url} holds no study")
    if study_name is None:
        if len(names) > 1:
            raise ExportError(f"{storage_url} holds {len(names)} studies ({', '.join(names)}); pick one with --study")
        study_name = names[0]
    if study_name not in names:
        raise ExportError(f"no study {study_name!r} in {storage_url}; it holds: {', '.join(names)}")
    live = optuna.load_study(study_name=study_name, storage=storage)
    memory = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name=study_name, from_storage=storage, to_storage=memory)
    study = optuna.load_study(study_name=study_name, storage=memory)
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        from ._tables import state_counts  # noqa: PLC0415

        states = ", ".join(f"{k} {v}" for k, v in sorted(state_counts(study).items())) or "no trials"
        raise ExportError(f"study {study_name!r} has no COMPLETE trial yet ({states}): nothing to export")
    try:
        meta = StudyMeta.read(study)
    except RecordError as e:
        raise ExportError(str(e)) from None
    bases = [Path(run_dir)] if run_dir is not None else []
    db = sqlite_file(storage_url)
    if db is not None:
        bases.append(db.parent)
    if meta.run_name:
        bases.append(Path("runs") / meta.run_name)
    try:
        orig = _orig_cost(meta)
    except Exception:  # noqa: BLE001 (an architecture this installation lacks: the "% of orig" columns stay empty)
        orig = None
    return RunView(
        study=study, live=live, storage_url=storage_url, run_dir=Path(run_dir) if run_dir is not None else None,
        meta=meta, bases=bases, orig_cost=orig, paper=paper_names(meta.arch, meta.num_classes),
        provenance=deeproots.provenance(), time=time.strftime("%Y-%m-%d %H:%M:%S"),
    )  # fmt: skip


def weights_stem(schedule_id: str) -> str:
    """File stem of a schedule's files (``nin:1-2-4`` -> ``nin_1-2-4``)."""
    from ..engine._study import weights_filename  # noqa: PLC0415

    return weights_filename(schedule_id).removesuffix(".safetensors")


def final_checkpoint(view: TrialView, bases: list[Path]) -> Any:
    """The trial's final checkpoint as a ``ray.tune.Checkpoint`` -- wherever Tune stored it (a local or
    network folder, ``s3://``, ``gs://``) -- or None when the study records none (or a relative one
    that no run folder holds).

    Read a file of it (``TrialFiles.WEIGHTS``, ``TrialFiles.RESULT``, an extra file a trial added)::

        ckpt = final_checkpoint(view, run.bases)
        with ckpt.as_directory() as folder:  # downloaded from an object store, used in place on disk
            data = (Path(folder) / TrialFiles.RESULT).read_bytes()

    Raises:
        ValueError: the checkpoint's filesystem cannot be opened.
    """
    from ..engine._trial_storage import checkpoint_at, resolve_checkpoint_uri  # noqa: PLC0415

    recorded = view.checkpoint
    if not recorded:
        return None
    location = resolve_checkpoint_uri(recorded, bases)
    return checkpoint_at(location) if location is not None else None


def find_weights(view: TrialView, bases: list[Path], study_name: str) -> Path | None:
    """A study made before trials stored checkpoints: the trial's ``weights`` file against each run folder."""
    rel = view.weights
    sid = view.schedule_id
    candidates: list[Path] = []
    for base in bases:
        if rel:
            candidates.append(Path(rel) if Path(rel).is_absolute() else base / rel)
        candidates.append(base / "weights" / study_name / f"{weights_stem(sid)}.safetensors")
    return next((c for c in candidates if c.is_file()), None)


@contextmanager
def trial_weights(view: TrialView, bases: list[Path], study_name: str) -> Iterator[Path | None]:
    """The trial's final weights as a local file while the block runs, or None when there are none.

    From its final checkpoint wherever Tune stored it (downloaded from an object store into a
    temporary folder, used in place on a local or network file system), else -- a study made before
    trials stored checkpoints -- its weights file (:func:`find_weights`).

    Raises:
        ValueError: the checkpoint's filesystem cannot be opened.
    """
    from ..engine.record import TrialFiles  # noqa: PLC0415

    ckpt = final_checkpoint(view, bases)
    if ckpt is None:
        yield find_weights(view, bases, study_name)
        return
    with ckpt.as_directory() as folder:
        weights = Path(folder) / TrialFiles.WEIGHTS
        yield weights if weights.is_file() else None
