"""Where a run lives and how its Optuna study is created, checked, resumed and seeded.

A run is a folder ``runs/<name>/`` (``run.json``, ``study.db`` by default, ``latency.json``, ``ray/``
-- Tune's storage unless ``storage_path`` names another --, ``export/``) plus a study in some storage.
The study records the space it was started with (``identity``) and the fidelity of its results;
rerunning with a different space is refused unless ``--fresh``, which starts a new study
``<name>-2`` (``-3`` ...) in the same storage and folder, with every result the older studies hold at
the same fidelity added to it (untrained, not counted).

Trials the driver runs carry Optuna heartbeats (:func:`open_storage` with ``heartbeat=True``); on a
resume, trials of a driver that stopped are recognised by their missed heartbeats
(``optuna.storages.fail_stale_trials``) and queued again with their checkpoint
(``RetryHeartbeatStaleTrialCallback``), never by being RUNNING alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import TrialState

from ..space import SpaceError
from ..space._params import ENCODING
from ._study_db import StorageError, check_storage_url, check_study_storage, sqlite_path, sqlite_url
from .record import Attr, Outcome, StudyAttr, StudyMeta, TrialView, constraint_values

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["RunPaths", "RunPlan", "plan_run", "open_storage", "prepare_study", "make_sampler", "read_run",
           "weights_filename", "trial_key", "sqlite_on_network_fs", "TRIAL_STALE_SECONDS"]  # fmt: skip

#: Seconds without a heartbeat after which a RUNNING trial is stale (its driver stopped): Optuna's
#: ``grace_period``. The driver beats every ``HEARTBEAT_SECONDS`` (:mod:`search.engine._lock`).
TRIAL_STALE_SECONDS = 15
#: File systems SQLite's locking does not work on (https://www.sqlite.org/useovernet.html).
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "lustre", "glusterfs", "ceph", "gpfs", "beegfs",
              "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs", "afs", "ncpfs")  # fmt: skip


def weights_filename(schedule_id: str) -> str:
    """A file-safe name for a schedule id: ``nin:1-2-4`` -> ``nin_1-2-4.safetensors``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in schedule_id)
    return f"{safe}.safetensors"


def trial_key(params: Any, values: dict[str, Any]) -> tuple[int, ...] | None:
    """The point of the parameter space ``params`` that a trial's ``values`` name (None when missing)."""
    try:
        return tuple(int(values[p.name]) for p in params.params)
    except KeyError:
        return None


@dataclass(frozen=True)
class RunPaths:
    """The files of one run.

    Attributes:
        root: ``runs/<name>``.
        storage_url: the study's SQLAlchemy URL.
        study_name: the current study.
        storage_path: Ray Tune's storage, where trials keep their checkpoints and logs: an absolute
            local path (default ``runs/<name>/ray``) or a URI (``s3://``, ``gs://``).
    """

    root: Path
    storage_url: str
    study_name: str
    storage_path: str = ""

    @property
    def run_file(self) -> Path:
        """``run.json``: storage URL, study name, space -- what export and resume read."""
        return self.root / "run.json"

    @property
    def ray_dir(self) -> Path:
        """The default Tune storage: ``runs/<name>/ray`` (experiments: checkpoints, logs, TensorBoard)."""
        return self.root / "ray"

    def trial_storage(self) -> Any:
        """The :class:`search.engine._trial_storage.TrialStorage` of ``storage_path``."""
        from ._trial_storage import TrialStorage  # noqa: PLC0415

        return TrialStorage.parse(self.storage_path or self.ray_dir, self.root)

    @property
    def export_dir(self) -> Path:
        """Where the export step writes."""
        return self.root / "export"

    @property
    def latency_cache(self) -> Path:
        """Measured latencies, one per schedule and protocol."""
        return self.root / "latency.json"

    def dashboard_command(self) -> str:
        """The command that shows the study in optuna-dashboard."""
        import shlex  # noqa: PLC0415

        return f"optuna-dashboard {shlex.quote(self.storage_url)}"


@dataclass(frozen=True)
class RunPlan:
    """What a search will do, decided before anything is written.

    Attributes:
        paths: the run's files.
        mode: ``"new"`` (no study yet), ``"resume"`` (the study exists, same space),
            ``"fresh"`` (a new study beside older ones), ``"restart"`` (the study exists with another
            space but holds no finished trial: it is made anew) or ``"differs"`` (a dry run's view of
            a study made with another space).
        diff: how the space differs from the existing study's (``key: old -> new``), or None.
        problem: why the storage cannot be used (SQLite on a network file system), for a dry run to
            say; a real run is refused instead.
    """

    paths: RunPaths
    mode: str
    diff: str | None = None
    problem: str | None = None


def _sqlite_path(url: str) -> Path | None:
    return sqlite_path(url)


def default_storage(run_dir: Path) -> str:
    """``sqlite:///runs/<name>/study.db`` (relative to the working directory, as given; quoted so that it
    parses back to the path, ``?``, ``#`` and ``%`` included)."""
    return sqlite_url(Path(run_dir) / "study.db")


def open_storage(url: str, *, heartbeat: bool = False) -> optuna.storages.RDBStorage:
    """An RDB storage; SQLite gets WAL mode (readers never block the writer) and a long lock timeout.

    Args:
        url: SQLAlchemy URL.
        heartbeat: the driver's storage: Optuna heartbeats every ``HEARTBEAT_SECONDS``, a trial stale
            after :data:`TRIAL_STALE_SECONDS` without one, and a stale trial queued again with its
            user attributes (its checkpoint among them) by ``RetryHeartbeatStaleTrialCallback``.

    Raises:
        StorageError: a bad URL, or a database holding tables that are not Optuna's (left unchanged);
            a reader checks :func:`search.engine._study_db.check_study_storage` first, as this creates the
            study's tables in a new or empty database.
    """
    from ._lock import HEARTBEAT_SECONDS  # noqa: PLC0415

    check_study_storage(url, allow_empty=True)  # never adds Optuna's tables beside a database's own
    path = _sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"storage {url!r}: the folder {path.parent} cannot be created ({e.strerror or e})") from None
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA journal_mode=WAL")
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat:
        with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs.update(
                heartbeat_interval=HEARTBEAT_SECONDS, grace_period=TRIAL_STALE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
            )  # fmt: skip
            return optuna.storages.RDBStorage(url, **kwargs)
    return optuna.storages.RDBStorage(url, **kwargs)


def _read_mounts() -> str:
    """The mount table (``/proc/mounts``; empty where there is none)."""
    try:
        return Path("/proc/mounts").read_text()
    except OSError:
        return ""


def sqlite_on_network_fs(url: str, mounts: str | None = None) -> str | None:
    """Why an SQLite URL cannot be used: its database sits on a network file system (None: it can).

    SQLite's file locking -- and WAL mode, which needs shared memory -- do not work over NFS, SMB and
    the like: two processes may corrupt the database. Read from ``/proc/mounts`` (Linux; elsewhere
    nothing is refused).

    Args:
        url: the study's URL (other backends: None).
        mounts: the text of ``/proc/mounts`` (default: read it).
    """
    path = _sqlite_path(url)
    if path is None or not str(path) or str(path) == ":memory:":
        return None
    mounts = _read_mounts() if mounts is None else mounts
    target = Path(path).expanduser().resolve()
    best: tuple[str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if target == Path(point) or Path(point) in target.parents:
            if best is None or len(point) > len(best[0]):
                best = (point, fields[2])
    if best is None or best[1] not in NETWORK_FS:
        return None
    return (f"{url} sits on a network file system ({best[1]} at {best[0]}), where SQLite's locking does not work "
            "and the study could be corrupted; use a server database (--storage postgresql+psycopg2://user@host/db) "
            "or an SQLite file on a local disk (--storage sqlite:////local/disk/study.db)")  # fmt: skip


def _study_names(url: str) -> list[str] | None:
    """Studies in the storage; None when it does not exist yet (and must not be created)."""
    try:
        if not check_study_storage(url, allow_empty=True):
            return None  # a new (or empty) database: the search makes the study in it
    except StorageError as e:
        raise SpaceError("", str(e)) from None
    try:
        storage = optuna.storages.RDBStorage(url, skip_compatibility_check=False)
    except Exception as e:  # noqa: BLE001 (any driver error: a one-line message)
        raise SpaceError("storage", f"cannot open {url}: {str(e).splitlines()[0]}") from None
    return [s.study_name for s in storage.get_all_studies()]


#: ``run.json`` keys naming a file of the run folder, relative to it (a copied or moved folder keeps its own).
RUN_STUDY_DB, RUN_RAY_DIR = "study_db", "ray_dir"


def run_file_doc(paths: RunPaths) -> dict[str, Any]:
    """What ``run.json`` records: the storage URL and study name, the Tune storage, and -- when they lie
    inside the run folder -- the study database and Tune storage relative to it, which readers prefer."""
    doc: dict[str, Any] = {"storage": paths.storage_url, "study_name": paths.study_name, "storage_path": paths.storage_path}
    root = paths.root.absolute().resolve()
    db = sqlite_path(paths.storage_url)
    for key, target in ((RUN_STUDY_DB, db), (RUN_RAY_DIR, Path(paths.storage_path) if paths.storage_path else None)):
        if target is None or not str(target) or "://" in str(target):
            continue
        try:
            doc[key] = target.absolute().resolve().relative_to(root).as_posix()
        except ValueError:
            pass  # outside the folder: the recorded URL / path is used as it is
    doc["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return doc


def read_run(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, checked, with files of the folder resolved against the folder.

    ``storage`` is the study's URL: the folder's own database when ``run.json`` says it lies in the
    folder (``study_db``), or -- a ``run.json`` written before that key -- when the folder holds a
    ``study.db`` (a copied or moved run reads its own study, never the original's, whatever the working
    directory). ``storage_path`` likewise (``ray_dir``; an older file: the folder's ``ray/``).

    Returns:
        The document, or None when the folder has no ``run.json``.

    Raises:
        StorageError: ``run.json`` unreadable, not JSON, not an object, or without a usable ``storage``.
    """
    root = Path(run_dir)
    f = root / "run.json"
    if not f.exists():
        return None
    try:
        doc = json.loads(f.read_text())
    except OSError as e:
        raise StorageError(f"{f}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise StorageError(f"{f} is corrupt (not JSON: {e}); restore it, or delete it to use the folder's study.db") from None
    if not isinstance(doc, dict):
        raise StorageError(f"{f} is corrupt (a JSON {type(doc).__name__}, not an object with 'storage' and 'study_name'); "
                           "restore it, or delete it to use the folder's study.db")  # fmt: skip
    for key, required in (("storage", True), ("study_name", False), ("storage_path", False), (RUN_STUDY_DB, False), (RUN_RAY_DIR, False)):
        value = doc.get(key)
        if (value is None and not required) or (isinstance(value, str) and value.strip()) or (key == "storage_path" and value == ""):
            continue
        raise StorageError(f"{f} is corrupt: {key!r} is {json.dumps(value)}, expected a non-empty string; restore it, or "
                           "delete it to use the folder's study.db")  # fmt: skip
    doc = dict(doc)
    if doc.get(RUN_STUDY_DB):
        doc["storage"] = sqlite_url(root / doc[RUN_STUDY_DB])
    elif sqlite_path(doc["storage"]) is not None and (root / "study.db").is_file():
        doc["storage"] = sqlite_url(root / "study.db")  # an older run.json: the folder's own database
    if doc.get(RUN_RAY_DIR):
        doc["storage_path"] = str((root / doc[RUN_RAY_DIR]).absolute())
    elif doc.get("storage_path") and "://" not in doc["storage_path"] and Path(doc["storage_path"]).name == "ray" \
            and (root / "ray").is_dir():
        doc["storage_path"] = str((root / "ray").absolute())  # an older run.json: the folder's own
    return doc


def same_storage(a: str, b: str) -> bool:
    """Whether two storage URLs name the same database (SQLite: the same file, however the path is written)."""
    pa, pb = sqlite_path(a), sqlite_path(b)
    if pa is None or pb is None:
        return a == b
    return pa.absolute().resolve() == pb.absolute().resolve()


def _diff(a: Any, b: Any, path: str = "") -> str | None:
    """First difference between two plain-data trees, as ``key: old -> new``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}.{i}")
            if d:
                return d
        return None
    if a != b:
        return f"{path}: {json.dumps(a)} -> {json.dumps(b)}"
    return None


def plan_run(
    space: ResolvedSpace, *, runs_dir: str | Path = "runs", storage: str | None = None, fresh: bool = False,
    refuse: bool = True, study: str | None = None, storage_path: str | None = None,
) -> RunPlan:  # fmt: skip
    """Decide the run folder, storage, Tune storage and study; refuse a changed space without ``fresh``.

    A study made with another space that holds no finished trial is simply made anew
    (``"restart"``): nothing would be lost. Reads the storage if it exists; writes nothing.

    Args:
        storage: the study's SQLAlchemy URL (default: the space's ``storage``, else
            ``sqlite:///runs/<name>/study.db``).
        refuse: raise on a changed space or an unusable storage (False: a dry run, which reports them).
        study: a study of the run's storage other than the run's own (``run.json`` is then not
            read); ``fresh`` numbers it ``<study>-2``, ``-3`` ... (the fidelity check's studies).
        storage_path: Ray Tune's storage (default: the space's ``storage_path``, else ``runs/<name>/ray``).

    Raises:
        SpaceError: the existing study was started with a different space (naming the first
            differing key) or by an older deeproots; the storage cannot be opened; an SQLite study on
            a network file system; a ``storage_path`` with credentials in it.
    """
    from ._trial_storage import TrialStorage  # noqa: PLC0415

    root = Path(runs_dir) / space.name
    url = storage or space.spec.storage or default_storage(root)
    # The run folder (run.json, latency.json, the default study and Tune storage) first: a failure there is --runs-dir's.
    from ._trial_storage import folder_problem  # noqa: PLC0415

    problem = folder_problem(root)
    if problem:
        raise SpaceError("--runs-dir", f"cannot write the run folder {root}: {problem}; name a folder this user "
                                       "may write (--runs-dir)")  # fmt: skip
    try:
        check_storage_url(url, create=True)
    except StorageError as e:
        raise SpaceError("", str(e)) from None
    tune_storage = TrialStorage.parse(storage_path or space.spec.storage_path or root / "ray", root,
                                      key="--storage-path" if storage_path else "storage_path").uri  # fmt: skip
    problem = sqlite_on_network_fs(url)
    if problem and refuse:
        raise SpaceError("storage", problem)
    run_file = root / "run.json"
    base = study or space.name  # (``study`` is reused below for the loaded study)
    study_name = base
    if study is None and run_file.exists():
        try:
            recorded = read_run(root)
        except StorageError as e:
            raise SpaceError("", str(e)) from None
        if recorded is not None and same_storage(recorded["storage"], url):
            study_name = recorded.get("study_name") or study_name
    names = _study_names(url)

    def plan(mode: str, diff: str | None = None, name: str = study_name) -> RunPlan:
        return RunPlan(RunPaths(root, url, name, tune_storage), mode, diff, problem)

    if not names or study_name not in names:
        return plan("new")
    study = optuna.load_study(study_name=study_name, storage=url)
    version = study.user_attrs.get(StudyAttr.RECORD_VERSION)
    if version != StudyMeta.version:
        diff: str | None = f"made by another deeproots (run record version {version or 1}, this one writes {StudyMeta.version})"
    elif study.user_attrs.get(StudyAttr.PARAM_ENCODING) != ENCODING:
        diff = f"parameters encoded as {study.user_attrs.get(StudyAttr.PARAM_ENCODING)!r}, this version encodes them as {ENCODING!r}"
    else:
        old = study.user_attrs.get(StudyAttr.IDENTITY)
        if isinstance(old, dict) and isinstance(old.get("data"), dict) and not space.data.get("fingerprint"):
            # The data is not read yet (a dry run, or the checks before the download): its content is
            # compared when the driver plans again with it, and damaged data is reported as such then.
            old = {**old, "data": {k: v for k, v in old["data"].items() if k != "fingerprint"}}
        diff = _diff(old, space.identity()) if old is not None else "the study records no space"
    if diff is None:
        return plan("resume")
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not fresh and not finished:
        return plan("restart", diff)
    if not refuse:
        return plan("differs", diff)
    if not fresh:
        raise SpaceError(
            "",
            f"run {space.name!r} (study {study_name!r} in {url}) was started with a different space ({diff}); "
            f"pass --fresh for a new study, or --name for a new run",
        )
    n = 2
    while f"{base}-{n}" in names:
        n += 1
    return plan("fresh", diff, f"{base}-{n}")


def make_sampler(space: ResolvedSpace, budget: int, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of ``search.sampler``, seeded with ``search.seed + offset``.

    ``offset`` is the number of trials already in the study, so a resumed search does not replay
    the proposals it made before (they would all be duplicates).

    Raises:
        SpaceError: bad ``search.sampler_options`` or a missing optional dependency.
    """
    s = space.spec.search
    seed = (s.seed + offset) % 2**32  # a resumed search's seed stays a 32-bit one
    opts = dict(s.sampler_options)
    if "seed" in opts:
        raise SpaceError("search.sampler_options", "'seed' is search.seed's (a resumed search offsets it by the trials "
                                                   "already made): set search.seed instead")  # fmt: skip
    try:
        if s.sampler == "nsga2":
            seeds = len(space.params.seeds)
            if "population_size" not in opts:
                opts["population_size"] = max(4, min(50, budget // 8), seeds)  # the seeds are generation 0; ~8 generations
            sampler = optuna.samplers.NSGAIISampler(seed=seed, **opts)
            if sampler.population_size < seeds:
                raise SpaceError("search.sampler_options", f"nsga2: population_size {sampler.population_size} is smaller "
                                 f"than the {seeds} seeds, which all belong to generation 0")  # fmt: skip
            return sampler
        if s.sampler == "tpe":
            opts.setdefault("multivariate", True)  # the group counts of a schedule act together
            opts.setdefault("constant_liar", True)  # trials run at once: do not propose what is running
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(seed=seed, **opts)
        if s.sampler == "gp":
            try:
                import scipy  # noqa: F401, PLC0415
            except ImportError:
                raise SpaceError("search.sampler", "gp needs scipy, which is not installed; use nsga2, tpe or random") from None
            return optuna.samplers.GPSampler(seed=seed, **opts)
        return optuna.samplers.RandomSampler(seed=seed, **opts)
    except (TypeError, ValueError) as e:
        if isinstance(e, SpaceError):
            raise
        raise SpaceError("search.sampler_options", f"{s.sampler}: {str(e).splitlines()[0]}") from None


def _trial_handle(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> optuna.Trial:
    """A writable handle on trial ``number`` of ``study`` (public storage look-ups only)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def prepare_study(
    plan: RunPlan,
    space: ResolvedSpace,
    storage: optuna.storages.BaseStorage,
    provenance: dict[str, Any],
    *,
    say: Callable[[str], None] | None = None,
    stale_wait: float | None = None,
) -> dict[str, Any]:
    """Create (new/fresh) or recover (resume) the study; returns what happened. Call it holding the
    study's driver lock (:class:`search.engine._lock.StudyLock`).

    New study: directions, metric names and the run record (:class:`StudyMeta`), the seeds
    enqueued, known results of other studies at the same fidelity added. Resumed study: trials of a
    driver that stopped are found by their heartbeats -- Optuna's ``fail_stale_trials`` fails those
    without one for :data:`TRIAL_STALE_SECONDS` and its ``RetryHeartbeatStaleTrialCallback`` queues
    each again with its user attributes, so the retry resumes from the trial's recorded checkpoint.
    Trials of a driver that died moments ago are waited for until they go stale (at most
    ``stale_wait`` seconds). RUNNING trials that never had a heartbeat (made by an older deeproots,
    which had none) become FAIL (``outcome: interrupted``) and are queued again.

    Args:
        say: one-line messages (waiting for stale trials).
        stale_wait: seconds to wait for trials of a stopped driver to go stale (default: the grace
            period and two heartbeats).

    Returns:
        ``{"created": bool, "recovered": int, "retry": int, "imported": int, "seeds_retried": int}``:
        trials of a stopped driver failed, how many of them were queued again, results imported, and
        seeds queued again after a failure a retry may cure.

    Raises:
        SpaceError: RUNNING trials keep getting heartbeats after the wait: a driver still runs them.
    """
    from .record import DIRECTIONS  # noqa: PLC0415

    pspace = space.params
    name = plan.paths.study_name
    directions = [DIRECTIONS[o] for o in space.objectives]
    info: dict[str, Any] = {"created": False, "recovered": 0, "retry": 0, "imported": 0, "seeds_retried": 0}
    existing = [s.study_name for s in storage.get_all_studies()]
    if plan.mode == "restart" and name in existing:  # made with another space, nothing finished: made anew
        optuna.delete_study(study_name=name, storage=storage)
        existing.remove(name)
    if name not in existing:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions)
        space.study_meta(space.name, provenance).write(study)
        for label, values in pspace.seeds:
            study.enqueue_trial(values, user_attrs={Attr.SEED: label})
        info["created"] = True
        info["imported"] = _import_known(study, storage, space, existing)
    else:
        study = optuna.load_study(study_name=name, storage=storage)
        info.update(_recover_running(study, storage, space, say or (lambda _: None), stale_wait))
        info["seeds_retried"] = _requeue_failed_seeds(study, space)
    study.set_user_attr(StudyAttr.TRIALS, space.spec.search.trials)
    return info


def _requeue_failed_seeds(study: optuna.Study, space: ResolvedSpace) -> int:
    """Queue again each seed of the space whose trials failed with an error a retry may cure (a worker
    that died, a missing module...), at most ``search.max_retries`` times, unless it is answered or
    queued already. Seeds are queued once, when the study is made; without this a seed that failed
    in an earlier run (say, of a broken environment, then fixed) would never be trained, and the
    sampler would spend its budget elsewhere. Returns how many were queued."""
    from ._searcher import deterministic  # noqa: PLC0415

    pspace = space.params
    done: set[tuple[int, ...]] = set()
    queued: set[tuple[int, ...]] = set()
    dead: set[tuple[int, ...]] = set()
    failed: dict[tuple[int, ...], list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        key = trial_key(pspace, t.params) if t.params else None
        if key is None:
            continue
        view = TrialView(t)
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            queued.add(key)
        elif t.state != TrialState.FAIL or view.outcome not in (Outcome.FAILED, Outcome.INTERRUPTED):
            done.add(key)  # answered: a result, or a proposal answered without training (duplicate, infeasible)
        elif view.outcome == Outcome.FAILED:
            failed.setdefault(key, []).append(t)
            if deterministic(view.reason or ""):
                dead.add(key)
    n = 0
    for label, values in pspace.seeds:
        key = pspace.key(values)
        tries = failed.get(key, [])
        if not tries or key in done or key in queued or key in dead or len(tries) > space.spec.search.max_retries:
            continue
        study.enqueue_trial(values, user_attrs={Attr.SEED: label, Attr.RETRY_OF: tries[-1].number})
        queued.add(key)
        n += 1
    return n


def _running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _recover_running(
    study: optuna.Study, storage: optuna.storages.BaseStorage, space: ResolvedSpace, say: Callable[[str], None],
    stale_wait: float | None,
) -> dict[str, Any]:  # fmt: skip
    """Trials left RUNNING by a stopped driver: failed and queued again (see :func:`prepare_study`)."""
    from ._lock import HEARTBEAT_SECONDS  # noqa: PLC0415

    pspace = space.params
    before = _running(study)
    if not before:
        return {"recovered": 0, "retry": 0}
    heartbeats = getattr(storage, "get_heartbeat_interval", lambda: None)() is not None
    legacy = [t for t in before if Attr.DRIVER not in t.user_attrs or not heartbeats]
    answered = {
        trial_key(pspace, t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    }
    retry: dict[tuple[int, ...], optuna.trial.FrozenTrial] = {}
    for t in legacy:  # never had a heartbeat: Optuna cannot tell whether they are stale
        trial = _trial_handle(study, storage, t.number)
        trial.set_user_attr(Attr.OUTCOME, Outcome.INTERRUPTED)
        trial.set_user_attr(Attr.FAIL_REASON, "the search driver stopped while this trial ran (killed?); its schedule is retried")
        study.tell(t.number, state=TrialState.FAIL)
        key = trial_key(pspace, t.params)
        if key is not None and key not in answered:
            retry.setdefault(key, t)
    for key, t in retry.items():
        values = dict(zip((p.name for p in pspace.params), key))
        keep = {k: t.user_attrs[k] for k in (Attr.SEED, Attr.CHECKPOINT) if k in t.user_attrs}
        study.enqueue_trial(values, user_attrs={Attr.RETRY_OF: t.number, **keep})
    tracked = {t.number for t in before} - {t.number for t in legacy}
    if tracked:
        wait = TRIAL_STALE_SECONDS + 2 * HEARTBEAT_SECONDS if stale_wait is None else stale_wait
        deadline = time.monotonic() + wait
        waiting = _fail_stale(study, tracked)
        if waiting:
            drivers = sorted({str(t.user_attrs.get(Attr.DRIVER)) for t in before if t.number in waiting})
            say(f"waiting up to {wait:.0f} s for {len(waiting)} trial(s) of a stopped driver ({'; '.join(drivers)}) "
                f"to miss their heartbeat ({TRIAL_STALE_SECONDS} s)")  # fmt: skip
        while waiting and time.monotonic() < deadline:
            time.sleep(1.0)
            waiting = _fail_stale(study, tracked)
        if waiting:
            drivers = sorted({str(t.user_attrs.get(Attr.DRIVER)) for t in before if t.number in waiting})
            raise SpaceError(
                "", f"trial(s) {', '.join(f'#{n}' for n in sorted(waiting))} of study {study.study_name!r} still get "
                    f"heartbeats from {'; '.join(drivers)}: a driver that lost the study's lock is still running them; stop it first",
            )  # fmt: skip
    return {"recovered": len(before), "retry": len(retry) + len(tracked)}


def _fail_stale(study: optuna.Study, numbers: set[int]) -> set[int]:
    """Fail the stale trials (Optuna's heartbeat check; each is queued again); which of ``numbers`` still run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return {t.number for t in _running(study)} & numbers


def _import_known(study: optuna.Study, storage: optuna.storages.BaseStorage, space: ResolvedSpace, names: list[str]) -> int:
    """Add results of other studies in ``storage`` at the same fidelity (``study.add_trial``)."""
    from optuna.trial import create_trial  # noqa: PLC0415

    pspace = space.params
    key = space.fidelity_key()
    seen: set[tuple[int, ...]] = set()
    added = 0
    for other in names:
        src = optuna.load_study(study_name=other, storage=storage)
        if src.user_attrs.get(StudyAttr.FIDELITY_KEY) != key:
            continue
        for t in src.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            attrs = dict(t.user_attrs)
            if attrs.get(Attr.OUTCOME) not in (Outcome.EVALUATED, Outcome.IMPORTED) or Attr.SCHEDULE not in attrs:
                continue
            try:
                values = pspace.values_of(attrs[Attr.SCHEDULE])
            except (SpaceError, KeyError):
                continue
            k = tuple(values.values())
            by_name = dict(zip(src.metric_names or [], t.values))
            if k in seen or any(o not in by_name for o in space.objectives):
                continue
            seen.add(k)
            constraints = constraint_values(space.limits, {c: attrs.get(c) for c in ("flops", "params", "latency_ms")})
            breached = any(v > 0 for v in constraints.values())
            attrs.update({Attr.OUTCOME: Outcome.INFEASIBLE if breached else Outcome.IMPORTED,
                          Attr.IMPORTED_FROM: f"{other}#{t.number}"})  # fmt: skip
            if breached:
                attrs[Attr.PRUNE_REASON] = "constraint (imported result)"
            study.add_trial(
                create_trial(
                    state=TrialState.PRUNED if breached else TrialState.COMPLETE,
                    values=None if breached else [by_name[o] for o in space.objectives],
                    params=values, distributions=pspace.distributions(), user_attrs=attrs,
                    constraints=constraints or None,
                )  # fmt: skip
            )
            added += 1
    return added
