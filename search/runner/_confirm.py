"""The confirmation stage's Ray side: retrain the front and its tied band with K seeds at a higher fidelity.

:func:`run_confirm` picks the schedules (:func:`search.engine._confirm.select_candidates`: the front
plus the schedules statistically tied with it, from per-image validation results of the search's
weights), makes one space per training seed (the run's space with ``confirm.overrides`` and
``trainer.seed``), and runs every (schedule, seed) that the companion study ``<study>-confirm`` does
not hold yet as a Ray Tune trial of the search's own trial function
(:func:`search.runner._trial.train_trial`). The driver records each finished trial in the companion
study as it reports (a Tune callback), so a confirmation killed at any point resumes with what is
missing: a recorded result is never retrained, a trial that finished but was not recorded is found
beside its weights (no training), and one that was cut short resumes from its last epoch's checkpoint.

The confirmation's seeds are ``trainer.seed + 1 ... + K`` of the run's space (never the seed the
search trained with), or ``trainer.seed ... + K - 1`` when ``confirm.overrides`` names ``trainer.seed``.
"""

from __future__ import annotations

import logging
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
    confirm_study_name,
    confirmed_trials,
    open_confirm_study,
    record_confirmed,
    select_candidates,
    summarize,
)
from ..engine.record import Attr
from ..space._schema import SpaceError

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["confirm_spaces", "run_confirm", "ConfirmResult", "print_confirmation"]


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


def _val_correct(space: ResolvedSpace, bases: list[Path], study_name: str) -> Callable[[Any], Any]:
    """FrozenTrial -> its per-image validation flags, from its weights; cached beside them (packed bits)."""
    import numpy as np  # noqa: PLC0415

    import deeproots  # noqa: PLC0415
    from deeproots.training import evaluate_per_image  # noqa: PLC0415

    from ..engine.record import TrialView  # noqa: PLC0415
    from ..outputs._locate import find_weights  # noqa: PLC0415
    from ._trial import _load_data_cached  # noqa: PLC0415

    data: list[Any] = []

    def correct_of(t: Any) -> Any:
        view = TrialView(t)
        weights = find_weights(view, bases, study_name)
        if weights is None:
            return None
        if not data:
            data.append(_load_data_cached(space.spec))
        n = len(data[0].val)
        cache = weights.with_name(weights.name.removesuffix(".safetensors") + ".val-correct")
        if cache.is_file() and cache.stat().st_size == (n + 7) // 8:
            return deeproots.unpack_correct(cache.read_bytes(), n)
        from safetensors.torch import load_file  # noqa: PLC0415

        model = deeproots.build_model(space.arch, view.schedule_id, num_classes=space.num_classes, **space.spec.model.options)
        model.load_state_dict(load_file(str(weights)))
        _, flags = evaluate_per_image(model.eval(), data[0].val, space.train, device="cpu")
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
    params = {**task["params"], "__costs": task["costs"], "__resume": task["resume"]}
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
) -> ConfirmResult:
    """Confirm the front of study ``study_name`` as ``space.spec.confirm`` says (see the module docstring).

    The caller holds the run's lock (one driver per run). Nothing is trained twice.

    Args:
        space: the run's resolved space, its ``confirm`` block the one to run (``confirm.seeds`` >= 1).
        run_dir: the run folder (weights go to ``weights/<study>-confirm/<fidelity key>/``).
        storage_url: the run's storage; the companion study lives there too.
        study_name: the search study.
        address: a Ray cluster; None starts a local Ray (or uses the one this process has).
        print_fn: progress output (default: a rich console).
        trial_fn: what a trial runs, ``f(config, ctx)`` (tests; default: the search's trainer).

    Returns:
        The :class:`ConfirmResult`.

    Raises:
        SpaceError: ``confirm.seeds`` is 0, or an override the space does not accept.

    Example:
        >>> from search.runner._confirm import run_confirm                                  # doctest: +SKIP
        >>> run_confirm(space, "runs/nin", "sqlite:///runs/nin/study.db", "nin").confirmation.front  # doctest: +SKIP
    """
    import optuna  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    from ..engine._study import open_storage  # noqa: PLC0415
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
    storage = open_storage(storage_url)
    search = optuna.load_study(study_name=study_name, storage=storage)
    correct_of = _val_correct(space, [root.resolve()], study_name)
    out(f"confirmation: the tie test scores the search's trained schedules image by image on the validation split "
        f"(once; cached beside their weights as <id>.val-correct) ...")  # fmt: skip
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
    done = confirmed_trials(cstudy)
    fid = ", ".join(f"{k}={v}" for k, v in block.overrides.items()) or "the search's own fidelity"
    n_front = sum(1 for c in candidates if c.on_front)
    out(f"confirmation of study {study_name!r} into {name!r}: {len(candidates)} schedule(s) ({n_front} of the front + "
        f"{len(candidates) - n_front} tied with it at p >= {block.alpha:g}, best first, at most {block.max_schedules}) x "
        f"{block.seeds} training seed(s) ({', '.join(map(str, seeds))}) at {fid}")  # fmt: skip
    for note in notes:
        out(f"  note: {note}")
    contexts: dict[str, Any] = {}
    for s, key in zip(seed_spaces, keys):
        contexts[key] = TrialContext(space=s, weights_dir=str((root / "weights" / name / key).resolve()),
                                     checkpoint_dir=str((root / "checkpoints" / name / key).resolve()), study_name=name)  # fmt: skip
    tasks: list[dict[str, Any]] = []
    owners: list[tuple[Candidate, int, str]] = []
    for cand in candidates:
        for seed, key in zip(seeds, keys):
            if (cand.schedule_id, key) in done:
                continue
            from ._trial import _checkpoint_filename  # noqa: PLC0415

            ckpt = Path(contexts[key].checkpoint_dir) / _checkpoint_filename(cand.schedule_id)
            costs = {k: v for k, v in cand.values.items() if k != "val_accuracy"}
            tasks.append({"params": dict(cand.params), "costs": costs, "resume": ckpt.is_file(), "fidelity_key": key})
            owners.append((cand, seed, key))
    total = len(candidates) * len(seeds)
    out(f"  {len(tasks)} training(s) to run, {total - len(tasks)} recorded already")
    result = ConfirmResult(summarize(search, cstudy))
    if tasks:
        prov = deeproots.provenance()
        provenance = {Attr.DEEPROOTS_VERSION: prov["deeproots"], Attr.GIT_REVISION: prov["git_revision"], Attr.TORCH: prov["torch"]}
        val_size = {key: int(s.spec.data.val_size) for s, key in zip(seed_spaces, keys)}
        result.interrupted, result.trained, result.recorded = _tune(
            space, root, name, tasks, owners, _Tasks(tasks, contexts, trial_fn), cstudy, val_size, provenance, address, out)
        result.confirmation = summarize(search, cstudy)
    print_confirmation(result.confirmation, out)
    out(f"confirmation: trained {result.trained}, recorded {result.recorded}; wall time {duration(time.time() - start)}"
        + ("; stopped -- rerun `python -m search.confirm RUN` to finish (nothing recorded is trained again)" if result.interrupted else ""))  # fmt: skip
    return result


def _tune(space: ResolvedSpace, root: Path, name: str, tasks: list[dict[str, Any]], owners: list[tuple[Candidate, int, str]],
          payload: _Tasks, cstudy: Any, val_size: dict[str, int], provenance: dict[str, Any], address: str | None,
          out: Callable[[Any], None]) -> tuple[bool, int, int]:  # fmt: skip
    """Run the confirmation's Tune experiment; (interrupted, trained, recorded)."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from ._driver import _ray_init  # noqa: PLC0415

    recorder = _Recorder(root, tasks, owners, cstudy, val_size, provenance, out)
    started = _ray_init(address)
    r = space.spec.resources
    trainable = tune.with_resources(tune.with_parameters(_confirm_trial, tasks=payload), {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={"task": tune.grid_search(list(range(len(tasks))))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=r.max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),  # fmt: skip
        run_config=tune.RunConfig(
            name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str((root / "ray").resolve()), verbose=0,
            callbacks=[recorder], failure_config=tune.FailureConfig(max_failures=0), log_to_file=True,
        ),
    )  # fmt: skip
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        tune_logger.setLevel(level)
        if started:
            ray.shutdown()
    c = recorder.counts
    return interrupted or c["failed"] > 0, c["trained"], c["recorded"]


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
    """Tune callback: the driver records each confirmation result in the companion study as it arrives
    (a kill loses nothing recorded), and prints one line per epoch and per result."""

    def __init__(self, root: Path, tasks: list[dict[str, Any]], owners: list[tuple[Candidate, int, str]], study: Any,
                 val_size: dict[str, int], provenance: dict[str, Any], out: Callable[[Any], None]) -> None:  # fmt: skip
        self.root, self.tasks, self.owners, self.study = root, tasks, owners, study
        self.val_size, self.provenance, self.out = val_size, provenance, out
        self.counts = {"trained": 0, "recorded": 0, "failed": 0}
        self.history: dict[str, list[float]] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks (tuner.pkl); a confirmation resumes from its study
        return {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:  # noqa: D102
        from deeproots import accuracy_se  # noqa: PLC0415

        cand, seed, key = self.owners[int(trial.config["task"])]
        label = f"{cand.schedule_id}{f' ({cand.name})' if cand.name else ''} seed {seed}"
        if result.get("status") == "training":
            self.history.setdefault(trial.trial_id, []).append(float(result["val_accuracy"]))
            self.out(f"    {label}: epoch {result.get('epoch')}/{result.get('epochs')} val {100 * float(result['val_accuracy']):.1f} %")
            return
        if result.get("status") != "done":
            return
        acc = float(result["val_accuracy"])
        recovered = bool(result.get("recovered"))
        per_epoch = list(result.get("history_before") or []) + self.history.pop(trial.trial_id, []) + [acc]
        w = str(result.get("weights", ""))
        attrs = {
            Attr.VAL_ACCURACY_SE: accuracy_se(acc, self.val_size[key]), Attr.VAL_ACCURACY_PER_EPOCH: per_epoch,
            Attr.EPOCHS: result.get("epochs"), Attr.EPOCHS_TRAINED: len(per_epoch), Attr.WEIGHTS: w if "://" in w or not w else os.path.relpath(w, self.root.resolve()),
            Attr.IMAGES_PER_SECOND: result.get("images_per_second"), Attr.TRAIN_SECONDS: result.get("train_seconds_total"),
            Attr.DEVICE: result.get("device"), Attr.HOST: result.get("host"), Attr.TUNE_TRIAL_ID: trial.trial_id,
            **({Attr.RECOVERED: True} if recovered else {}), **self.provenance,
        }  # fmt: skip
        record_confirmed(self.study, cand, seed=seed, fidelity_key=key, accuracy=acc, attrs=attrs)
        self.counts["recorded"] += 1
        self.counts["trained"] += 0 if recovered else 1
        self.out(f"  [{self.counts['recorded']}/{len(self.tasks)}] {label}: val {100 * acc:.1f} % "
                 f"(search {100 * cand.values['val_accuracy']:.1f} %)" + (" -- found beside its weights, not retrained" if recovered else ""))  # fmt: skip

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        cand, seed, _ = self.owners[int(trial.config["task"])]
        self.counts["failed"] += 1
        self.out(f"  {cand.schedule_id} seed {seed}: the trial failed (log: {trial.path}); rerun to retry it")
