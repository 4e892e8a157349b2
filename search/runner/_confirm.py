"""The confirmation stage's Ray side: retrain the front and its tied band with K seeds at a higher fidelity.

:func:`run_confirm` picks the schedules (:func:`search.engine._confirm.select_candidates`: the front
plus the schedules statistically tied with it, from per-image validation results of the search's
weights), makes one space per training seed (the run's space with ``confirm.overrides`` and
``trainer.seed``), and runs every (schedule, seed) that the companion study ``<study>-confirm`` does
not hold yet as a Ray Tune trial of the search's own trial function
(:func:`search.runner._trial.train_trial`). Trials keep their checkpoints in the run's Tune storage
(``storage_path``: a local folder, NFS, ``s3://``...), as the search's do. The driver runs each
training as a RUNNING trial of the companion study, records every checkpoint Tune persists on it
(its URI) and finishes it when the trial reports its result (Tune callbacks), so a confirmation
killed at any point resumes with what is missing: a recorded result is never retrained, and a
training that was cut short -- or finished, its result not yet recorded -- restarts from the
checkpoint it reached (a final one is reported again without training).

The driver holds the run's driver lock (:class:`search.engine._lock.StudyLock` on the search study,
with its heartbeat) for the whole confirmation: :func:`locked_confirm` takes it; a search that
confirms at its end already holds it.

The tie test's per-image validation results of the search's schedules are cached by the driver in
the run folder (``val-correct/``), one file per trial and checkpoint.

The confirmation's seeds are ``trainer.seed + 1 ... + K`` of the run's space (never the seed the
search trained with), or ``trainer.seed ... + K - 1`` when ``confirm.overrides`` names ``trainer.seed``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ray.tune import Callback

from .._text import duration
from ..engine._confirm import (
    Candidate,
    Confirmation,
    close_abandoned,
    confirmed_trials,
    fail_confirmed,
    finish_confirmed,
    open_confirm_study,
    resume_points,
    select_candidates,
    start_confirmed,
    summarize,
)
from ..engine.record import Attr, Outcome
from ..space._schema import SpaceError

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["confirm_spaces", "run_confirm", "locked_confirm", "ConfirmResult", "print_confirmation"]


@dataclass
class ConfirmResult:
    """What :func:`run_confirm` did.

    Attributes:
        confirmation: the companion study's summary (:class:`search.engine._confirm.Confirmation`).
        trained: trainings run by this call (a recovered result beside its weights is not one).
        recorded: results recorded by this call.
        interrupted: stopped by Ctrl-C, or trials failed (rerun to finish).
    """

    confirmation: Confirmation
    trained: int = 0
    recorded: int = 0
    interrupted: bool = False


def confirm_spaces(space: ResolvedSpace, *, check_data: bool = True) -> list[ResolvedSpace]:
    """One space per confirmation seed: ``space`` with ``confirm.overrides`` and the seed's ``trainer.seed``.

    Raises:
        SpaceError: an override the space does not accept, named as ``confirm.overrides.<key>``.
    """
    from ..space._load import apply_override, read_space  # noqa: PLC0415
    from ..space._resolve import resolve  # noqa: PLC0415

    block = space.spec.confirm
    doc = space.spec.model_dump(mode="json")
    for key, value in block.overrides.items():
        apply_override(doc, str(key).split("."), value)
    explicit = "trainer.seed" in block.overrides
    base = int(block.overrides["trainer.seed"]) if explicit else space.train.seed + 1
    out = []
    for k in range(block.seeds):
        doc["trainer"]["seed"] = base + k
        try:
            out.append(resolve(read_space(doc), check_data=check_data, profile=space.profile))
        except SpaceError as e:
            key = e.key if e.key.split(".")[0] in ("data", "trainer") else ""
            msg = str(e).removeprefix(f"{e.key}: ") if e.key else str(e)
            raise SpaceError(f"confirm.overrides.{key}" if key else "confirm.overrides", msg) from None
    return out


def _val_correct(space: ResolvedSpace, root: Path, study_name: str) -> Callable[[Any], Any]:
    """FrozenTrial -> its per-image validation flags, from its final weights wherever they are stored.

    Cached by this driver in ``<run>/val-correct/`` (packed bits), one file per trial and checkpoint
    (or weights file): a trial retrained under the same number, or its checkpoint moved, is scored again.
    """
    import hashlib  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    import deeproots  # noqa: PLC0415
    from deeproots.training import evaluate_per_image  # noqa: PLC0415

    from ..engine.record import TrialView  # noqa: PLC0415
    from ..outputs._locate import trial_weights  # noqa: PLC0415
    from ._trial import _load_data_cached  # noqa: PLC0415

    data: list[Any] = []
    bases = [root.resolve()]
    folder = root / "val-correct"

    def correct_of(t: Any) -> Any:
        view = TrialView(t)
        location = view.checkpoint or view.weights or ""
        if not data:
            data.append(_load_data_cached(space.spec))
        n = len(data[0].val)
        digest = hashlib.sha256(f"{study_name}|{t.number}|{location}|{view.schedule_id}".encode()).hexdigest()[:16]
        cache = folder / f"{study_name}-{t.number}-{digest}.bits"
        if location and cache.is_file() and cache.stat().st_size == (n + 7) // 8:
            return deeproots.unpack_correct(cache.read_bytes(), n)
        from safetensors.torch import load_file  # noqa: PLC0415

        try:
            with trial_weights(view, bases, study_name) as weights:
                if weights is None:
                    return None
                state = load_file(str(weights))
        except Exception:  # noqa: BLE001 (an unreachable object store, a deleted folder: treated as missing weights)
            return None
        model = deeproots.build_model(space.arch, view.schedule_id, num_classes=space.num_classes, **space.spec.model.options)
        model.load_state_dict(state)
        _, flags = evaluate_per_image(model.eval(), data[0].val, space.train, device="cpu")
        if location:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            tmp.write_bytes(deeproots.pack_correct(flags))
            os.replace(tmp, cache)
        return np.asarray(flags.numpy(), dtype=bool)

    return correct_of


class _Tasks:
    """What the Tune trials of a confirmation run: task index -> parameters, seed space, resume flag."""

    def __init__(self, tasks: list[dict[str, Any]], contexts: dict[str, Any], trial_fn: Callable[..., None] | None):
        self.tasks, self.contexts, self.trial_fn = tasks, contexts, trial_fn


def _confirm_trial(config: dict[str, Any], tasks: _Tasks) -> None:
    """A confirmation trial: the search's trial function on one (schedule, seed) task."""
    from ._trial import train_trial  # noqa: PLC0415

    task = tasks.tasks[int(config["task"])]
    params = {**task["params"], "__costs": task["costs"], "__resume_from": task["resume_from"]}
    (tasks.trial_fn or train_trial)(params, tasks.contexts[task["fidelity_key"]])


def run_confirm(
    space: ResolvedSpace,
    run_dir: str | Path,
    storage_url: str,
    study_name: str,
    *,
    address: str | None = None,
    print_fn: Callable[[Any], None] | None = None,
    trial_fn: Callable[..., None] | None = None,
    storage_path: str | None = None,
    beat: Any = None,
) -> ConfirmResult:
    """Confirm the front of study ``study_name`` as ``space.spec.confirm`` says (see the module docstring).

    The caller holds the run's driver lock (:func:`locked_confirm` takes it). Nothing is trained twice.

    Args:
        space: the run's resolved space, its ``confirm`` block the one to run (``confirm.seeds`` >= 1).
        run_dir: the run folder (the tie test's cache goes to ``val-correct/``; relative checkpoints are relative to it).
        storage_url: the run's storage; the companion study lives there too.
        study_name: the search study.
        address: a Ray cluster; None starts a local Ray (or uses the one this process has).
        print_fn: progress output (default: a rich console).
        trial_fn: what a trial runs, ``f(config, ctx)`` (tests; default: the search's trainer).
        storage_path: the run's Tune storage (``run.json``'s ``storage_path``; default ``<run>/ray``).
        beat: the driver's heartbeat thread (:class:`search.runner._driver._Heartbeat`) keeping the
            lock; told to stop the confirmation's trials when another driver took the study over.

    Returns:
        The :class:`ConfirmResult`.

    Raises:
        SpaceError: ``confirm.seeds`` is 0, an override the space does not accept, a Tune storage
            that cannot be written.

    Example:
        >>> from search.runner._confirm import run_confirm                                  # doctest: +SKIP
        >>> run_confirm(space, "runs/nin", "sqlite:///runs/nin/study.db", "nin").confirmation.front  # doctest: +SKIP
    """
    import optuna  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    from ..engine._study import RunPaths, open_storage  # noqa: PLC0415
    from ..engine._trial_storage import resolve_checkpoint_uri  # noqa: PLC0415
    from ._estimate import console  # noqa: PLC0415
    from ._trial import TrialContext  # noqa: PLC0415

    out = print_fn or console().print
    start = time.time()
    block = space.spec.confirm
    if block.seeds < 1:
        raise SpaceError("confirm.seeds", "is 0: nothing to confirm; set it to the training seeds per schedule (e.g. --set confirm.seeds=2)")
    space = space.with_data()
    seed_spaces = [s.with_data() for s in confirm_spaces(space)]
    root = Path(run_dir)
    trial_storage = RunPaths(root, storage_url, study_name, storage_path=storage_path or "").trial_storage()
    trial_storage.check_writable()
    storage = open_storage(storage_url)
    search = optuna.load_study(study_name=study_name, storage=storage)
    correct_of = _val_correct(space, root, study_name)
    out(f"confirmation: the tie test scores the search's trained schedules image by image on the validation split "
        f"(once; cached in {root / 'val-correct'}/) ...")  # fmt: skip
    candidates, band, notes = select_candidates(search, alpha=block.alpha, max_schedules=block.max_schedules,
                                                correct_of=correct_of)  # fmt: skip
    keys = [s.fidelity_key() for s in seed_spaces]
    seeds = [s.train.seed for s in seed_spaces]
    record = {
        "seeds": block.seeds, "max_schedules": block.max_schedules, "overrides": dict(block.overrides), "alpha": block.alpha,
        "training_seeds": seeds, "fidelity_keys": keys, "fidelity": seed_spaces[0].fidelity(),
        "front": [c.schedule_id for c in candidates if c.on_front] if band is None else list(band.front),
        "band": [] if band is None else list(band.members), "selected": [c.schedule_id for c in candidates],
    }  # fmt: skip
    cstudy = open_confirm_study(storage, search, record)
    name = cstudy.study_name
    abandoned = close_abandoned(storage, cstudy, "its driver stopped while it ran; a rerun resumes from its checkpoint")
    done = confirmed_trials(cstudy)
    resume = resume_points(cstudy)
    fid = ", ".join(f"{k}={v}" for k, v in block.overrides.items()) or "the search's own fidelity"
    n_front = sum(1 for c in candidates if c.on_front)
    out(f"confirmation of study {study_name!r} into {name!r}: {len(candidates)} schedule(s) ({n_front} of the front + "
        f"{len(candidates) - n_front} tied with it at p >= {block.alpha:g}, best first, at most {block.max_schedules}) x "
        f"{block.seeds} training seed(s) ({', '.join(map(str, seeds))}) at {fid}")  # fmt: skip
    for note in notes:
        out(f"  note: {note}")
    if abandoned:
        out(f"  {abandoned} training(s) left running by a stopped driver closed (FAIL); each resumes from the checkpoint it reached")
    contexts = {key: TrialContext(space=s, study_name=name) for s, key in zip(seed_spaces, keys)}
    tasks: list[dict[str, Any]] = []
    owners: list[tuple[Candidate, int, str]] = []
    for cand in candidates:
        for seed, key in zip(seeds, keys):
            if (cand.schedule_id, key) in done:
                continue
            recorded = resume.get((cand.schedule_id, key))
            costs = {k: v for k, v in cand.values.items() if k != "val_accuracy"}
            tasks.append({"params": dict(cand.params), "costs": costs, "fidelity_key": key, "recorded": recorded,
                          "resume_from": resolve_checkpoint_uri(recorded, [root.resolve()]) if recorded else None})  # fmt: skip
            owners.append((cand, seed, key))
    total = len(candidates) * len(seeds)
    resuming = sum(1 for t in tasks if t["resume_from"])
    out(f"  {len(tasks)} training(s) to run, {total - len(tasks)} recorded already"
        + (f"; {resuming} resume(s) from the checkpoint an earlier attempt reached" if resuming else ""))  # fmt: skip
    result = ConfirmResult(summarize(search, cstudy))
    if tasks:
        out(f"  trials keep their checkpoints in {trial_storage.describe()}")
        prov = deeproots.provenance()
        provenance = {Attr.DEEPROOTS_VERSION: prov["deeproots"], Attr.GIT_REVISION: prov["git_revision"], Attr.TORCH: prov["torch"]}
        val_size = {key: int(s.spec.data.val_size) for s, key in zip(seed_spaces, keys)}
        recorder = _Recorder(root, tasks, owners, cstudy, val_size, provenance, out, trial_storage.uri_of)
        guard = _Guard(recorder)
        previous = getattr(beat, "searcher", None)
        if beat is not None:
            beat.searcher = guard
        try:
            result.interrupted, result.trained, result.recorded = _tune(
                space, name, trial_storage, _Tasks(tasks, contexts, trial_fn), recorder, guard, address)
        finally:
            if beat is not None:
                beat.searcher = previous
        result.confirmation = summarize(search, cstudy)
    print_confirmation(result.confirmation, out)
    out(f"confirmation: trained {result.trained}, recorded {result.recorded}; wall time {duration(time.time() - start)}"
        + ("; stopped -- rerun `python -m search.confirm RUN` to finish (nothing recorded is trained again)" if result.interrupted else ""))  # fmt: skip
    return result


def locked_confirm(space: ResolvedSpace, run_dir: str | Path, storage_url: str, study_name: str, **kwargs: Any) -> ConfirmResult:
    """:func:`run_confirm` holding the run's driver lock -- the search study's, in its database, as the
    search's driver takes it -- with its heartbeat, for the whole confirmation.

    Raises:
        SpaceError: another driver holds the study (one line naming it), or what :func:`run_confirm` raises.
    """
    from ..engine._lock import StudyLock  # noqa: PLC0415
    from ._driver import _Heartbeat  # noqa: PLC0415
    from ._estimate import console  # noqa: PLC0415

    out = kwargs.get("print_fn") or console().print
    lock = StudyLock.acquire(storage_url, study_name)
    beat = _Heartbeat(lock, out)
    beat.start()
    try:
        if lock.took_over:
            out(f"took study {study_name!r} over from a driver that is gone ({lock.took_over})")
        return run_confirm(space, run_dir, storage_url, study_name, beat=beat, **kwargs)
    finally:
        beat.stop()
        lock.release()


class _Guard:
    """What the driver's heartbeat thread talks to during a confirmation (in place of the searcher)."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.lost: str | None = None

    def heartbeat(self) -> None:  # Optuna's heartbeats: the companion study's trials are closed by the next holder
        return None

    def lose(self, reason: str) -> None:
        """Another driver took the study over: stop every trial at its next report."""
        self.lost = reason

    def stop(self, trial_id: str, result: dict) -> bool:
        """Tune's stopper (``RunConfig(stop=...)``)."""
        return self.lost is not None


def _tune(space: ResolvedSpace, name: str, trial_storage: Any, payload: _Tasks, recorder: _Recorder, guard: _Guard,
          address: str | None) -> tuple[bool, int, int]:  # fmt: skip
    """Run the confirmation's Tune experiment; (interrupted, trained, recorded)."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from ._driver import _ray_init, fit_quietly  # noqa: PLC0415

    started = _ray_init(address)
    r = space.spec.resources
    trainable = tune.with_resources(tune.with_parameters(_confirm_trial, tasks=payload), {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={"task": tune.grid_search(list(range(len(payload.tasks))))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=r.max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),  # fmt: skip
        run_config=tune.RunConfig(
            name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", **trial_storage.run_config(), verbose=0,
            callbacks=[recorder], stop=guard.stop, log_to_file=True,
            # a trial whose worker or node died restarts from its last checkpoint (as the search's do)
            failure_config=tune.FailureConfig(max_failures=r.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the companion study records the latest one
        ),
    )  # fmt: skip
    interrupted = False  # stays False if fit raises: the error is what the caller sees
    try:
        interrupted = fit_quietly(tuner)
    finally:
        open_trials = recorder.abandon()
        if started:
            ray.shutdown()
    c = recorder.counts
    # Tune catches Ctrl-C itself and returns normally (between two trials no trial is open): a run that
    # recorded fewer trainings than it was given was stopped.
    unfinished = c["recorded"] + c["failed"] < len(payload.tasks)
    return interrupted or unfinished or open_trials > 0 or c["failed"] > 0 or guard.lost is not None, c["trained"], c["recorded"]


def print_confirmation(c: Confirmation, out: Callable[[Any], None]) -> None:
    """The confirmed front as a table, Kendall's tau, the tied band."""
    block = c.block
    seeds = block.get("training_seeds", [])
    if not c.schedules:
        out("no schedule confirmed with every seed yet")
        return
    width = max(len(s.schedule_id) for s in c.schedules)
    out("")
    out(f"confirmed schedules (validation accuracy %, search: 1 seed at the search's fidelity; confirmed: mean ± s.d. "
        f"over seeds {', '.join(map(str, seeds))}); * on the confirmed front:")  # fmt: skip
    costs = list(c.schedules[0].costs)
    out(f"    {'schedule':<{width}}  {'name':<8}  {'search':>7}  {'confirmed':>13}  " + "  ".join(f"{k:>12}" for k in costs) + "  from")
    for s in c.schedules:
        mark = "*" if s.schedule_id in c.front else " "
        sd = "-" if s.sd != s.sd else f"{100 * s.sd:.2f}"
        cells = "  ".join(f"{v:>12,.0f}" for v in s.costs.values())
        out(f"  {mark} {s.schedule_id:<{width}}  {s.name or '':<8}  {100 * s.search_accuracy:>7.2f}  {100 * s.mean:>6.2f} ± {sd:>4}  "
            f"{cells}  {'front' if s.on_front else 'tied band'}")  # fmt: skip
    if c.tau is not None:
        t = c.tau
        out(f"Kendall τ search fidelity vs confirmation: {t.tau:.2f} ({100 * t.confidence:.0f} % paired bootstrap interval "
            f"{t.low:.2f} to {t.high:.2f}; {t.schedules} schedules)")  # fmt: skip
    else:
        out("Kendall τ search fidelity vs confirmation: needs at least 3 confirmed schedules")
    band = block.get("band") or []
    out(f"tied band (p >= {block.get('alpha', 0.05):g}, exact McNemar): {', '.join(band) if band else 'empty'}")
    if c.incomplete:
        out(f"not yet confirmed with every seed: {', '.join(c.incomplete)}")


class _Recorder(Callback):
    """Tune callback: the driver runs each training as a RUNNING trial of the companion study, records
    every checkpoint Tune persists on it (a kill loses nothing: a rerun resumes from it), finishes it
    COMPLETE with its result, and prints one line per epoch and per result."""

    def __init__(self, root: Path, tasks: list[dict[str, Any]], owners: list[tuple[Candidate, int, str]], study: Any,
                 val_size: dict[str, int], provenance: dict[str, Any], out: Callable[[Any], None],
                 uri_of: Callable[[str], str]) -> None:  # fmt: skip
        self.root, self.tasks, self.owners, self.study = root, tasks, owners, study
        self.val_size, self.provenance, self.out, self.uri_of = val_size, provenance, out, uri_of
        self.counts = {"trained": 0, "recorded": 0, "failed": 0}
        self.history: dict[str, list[float]] = {}
        self.open: dict[str, Any] = {}  # Tune trial id -> the companion study's RUNNING trial

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks (tuner.pkl); a confirmation resumes from its study
        return {}

    def _label(self, trial: Any) -> tuple[Candidate, int, str, str]:
        cand, seed, key = self.owners[int(trial.config["task"])]
        return cand, seed, key, f"{cand.schedule_id}{f' ({cand.name})' if cand.name else ''} seed {seed}"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        if trial.trial_id in self.open:
            return
        cand, seed, key, _ = self._label(trial)
        t = start_confirmed(self.study, cand, seed=seed, fidelity_key=key)
        t.set_user_attr(Attr.TUNE_TRIAL_ID, trial.trial_id)
        recorded = self.tasks[int(trial.config["task"])].get("recorded")
        if recorded:  # the checkpoint it starts from, until it reaches one of its own
            t.set_user_attr(Attr.CHECKPOINT, recorded)
        for k, v in self.provenance.items():
            t.set_user_attr(k, v)
        self.open[trial.trial_id] = t

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:  # noqa: D102
        from ..engine._trial_storage import record_location  # noqa: PLC0415

        t = self.open.get(trial.trial_id)
        if t is not None:
            t.set_user_attr(Attr.CHECKPOINT, record_location(self.uri_of(checkpoint.path), self.root))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:  # noqa: D102
        if result.get("status") == "training":
            _, _, _, label = self._label(trial)
            self.history.setdefault(trial.trial_id, []).append(float(result["val_accuracy"]))
            self.out(f"    {label}: epoch {result.get('epoch')}/{result.get('epochs')} val {100 * float(result['val_accuracy']):.1f} %")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        # after the final checkpoint was persisted and recorded (Tune saves before it completes a trial)
        from deeproots import accuracy_se  # noqa: PLC0415

        t = self.open.pop(trial.trial_id, None)
        if t is None:
            return
        cand, seed, key, label = self._label(trial)
        result = trial.last_result or {}
        if result.get("status") != "done":
            self.counts["failed"] += 1
            reason = str(result.get("error") or "stopped before it reported its result")
            fail_confirmed(self.study, t, Outcome.FAILED if result.get("status") == "failed" else Outcome.INTERRUPTED, reason)
            self.out(f"  {label}: {reason}; rerun to retry it")
            return
        acc = float(result["val_accuracy"])
        recovered = bool(result.get("recovered"))
        per_epoch = list(result.get("history_before") or []) + self.history.pop(trial.trial_id, []) + [acc]
        attrs = {
            Attr.VAL_ACCURACY_SE: accuracy_se(acc, self.val_size[key]), Attr.VAL_ACCURACY_PER_EPOCH: per_epoch,
            Attr.EPOCHS: result.get("epochs"), Attr.EPOCHS_TRAINED: len(per_epoch),
            Attr.IMAGES_PER_SECOND: result.get("images_per_second"), Attr.TRAIN_SECONDS: result.get("train_seconds_total"),
            Attr.DEVICE: result.get("device"), Attr.HOST: result.get("host"),
            **({Attr.RECOVERED: True} if recovered else {}),
        }  # fmt: skip
        finish_confirmed(self.study, t, cand, accuracy=acc, attrs=attrs)
        self.counts["recorded"] += 1
        self.counts["trained"] += 0 if recovered else 1
        self.out(f"  [{self.counts['recorded']}/{len(self.tasks)}] {label}: val {100 * acc:.1f} % "
                 f"(search {100 * cand.values['val_accuracy']:.1f} %)"
                 + (" -- its final checkpoint was there already, not retrained" if recovered else ""))  # fmt: skip

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        from .._text import one_line  # noqa: PLC0415

        t = self.open.pop(trial.trial_id, None)
        _, _, _, label = self._label(trial)
        self.counts["failed"] += 1
        reason = "the trial raised"
        try:
            path = trial.error_file
            text = open(path).read() if path and os.path.exists(path) else trial.get_error()
            reason = one_line(str(text)) if text else reason
        except Exception:  # noqa: BLE001 (a reason is nice to have, never fatal)
            pass
        if t is not None:
            fail_confirmed(self.study, t, Outcome.FAILED, reason)
        self.out(f"  {label}: the trial failed (log: {trial.path}); rerun to retry it")

    def abandon(self) -> int:
        """FAIL every training still open (Ctrl-C, a lost lock), its checkpoint kept for the rerun; how many."""
        open_ = list(self.open.values())
        self.open.clear()
        for t in open_:
            fail_confirmed(self.study, t, Outcome.INTERRUPTED, "the confirmation stopped while it ran; rerun to resume it")
        return len(open_)
