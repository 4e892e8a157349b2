"""The rank-reliability check: can a space's fidelity rank its schedules at all?

A search at a cheap fidelity (few images, few epochs) trusts that the order of its accuracies is
the order of the schedules. :func:`check_fidelity` measures that trust on the space itself: it
draws schedules of the space at random (plus its paper seeds), trains each with two (or more)
training seeds (``trainer.seed``) at the space's fidelity, and optionally once more at a second
fidelity (``--against trainer.epochs=10``), then reports

* the binomial standard error of one accuracy (the validation sample's noise alone) and the
  seed-to-seed standard deviation of one accuracy (what another training seed adds);
* Kendall's tau between the training seeds' accuracies, with a paired bootstrap interval
  (:func:`search.engine.noise.rank_agreement`), and tau against the second fidelity;
* one sentence (:func:`verdict`): whether this fidelity can rank the schedules of this space.

It trains through the search itself (:func:`search.run_search`): one study per fidelity
(training seed included) in the run's storage, named ``<run>-fidelity-<fidelity key>``, with the
drawn schedules as its seeds and a budget of exactly those not yet trained. Results of every
study at the same fidelity are reused, in both directions: schedules a search already trained are
not trained again here, and a later search at the same fidelity imports what this check trained
(``outcome: imported``) instead of training it again.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .._text import duration
from ..engine.noise import RankAgreement, rank_agreement
from ..engine.record import Outcome, StudyAttr, TrialView
from ..space._load import apply_override, parse_override, read_space
from ..space._schema import SpaceError

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["FidelityError", "FidelityReport", "Measurement", "check_fidelity", "sample_schedules", "verdict", "RANKS",
           "fidelity_study"]  # fmt: skip

#: The bootstrap interval's lower end of the seed-to-seed tau at or above which a fidelity "can
#: rank" a space's schedules: at least three pairs of schedules in four keep their order when only
#: the training seed changes (tau = concordant - discordant share of pairs).
RANKS = 0.5


class FidelityError(ValueError):
    """The check cannot give a verdict: a measurement's search stopped, or too few schedules have a
    result in every measurement. The message says what happened and that a rerun trains the rest."""


@dataclass(frozen=True)
class Measurement:
    """One set of accuracies of the sampled schedules.

    Attributes:
        label: ``"seed 0"``, ``"seed 1"``, or the second fidelity (``"trainer.epochs=10"``).
        study: the study it trained into (``<run>-fidelity-<key>``).
        fidelity_key: the fidelity's key (:meth:`search.space.ResolvedSpace.fidelity_key`).
        accuracy: schedule id -> validation accuracy in [0, 1] (None: no result, e.g. the trial failed).
        trained: schedules trained by this call (the others were stored already).
        val_images: validation images each accuracy was measured on.
    """

    label: str
    study: str
    fidelity_key: str
    accuracy: dict[str, float | None]
    trained: int
    val_images: int


@dataclass
class FidelityReport:
    """What :func:`check_fidelity` measured (fractions in [0, 1]; ``*_points`` in percentage points).

    Attributes:
        space: the space's run name.
        schedules: (schedule id, paper name or None) of every sampled schedule, in order.
        seeds: one :class:`Measurement` per training seed, at the space's fidelity.
        against: the :class:`Measurement` at the second fidelity, or None.
        compared: schedule ids with a result in every measurement (what tau is computed on).
        se: binomial standard error of one accuracy at the mean accuracy of the seeds.
        seed_sd: seed-to-seed standard deviation of one accuracy (pooled within schedules).
        spread_sd: standard deviation of the seeds' mean accuracies across schedules.
        seed_tau: Kendall's tau between the training seeds (mean over pairs for more than two).
        against_tau: tau between the first training seed and the second fidelity, or None.
        verdict: one sentence.
        wall_seconds: wall time of the check.
        notes: what the figures leave out (schedules without a result in every measurement).
    """

    space: str
    schedules: list[tuple[str, str | None]]
    seeds: list[Measurement]
    against: Measurement | None
    compared: list[str]
    se: float
    seed_sd: float
    spread_sd: float
    seed_tau: RankAgreement
    against_tau: RankAgreement | None
    verdict: str
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def trained(self) -> int:
        """Trainings this check ran (the rest were stored already)."""
        return sum(m.trained for m in self.measurements)

    @property
    def measurements(self) -> list[Measurement]:
        """Every measurement: the seeds, then the second fidelity."""
        return self.seeds + ([self.against] if self.against is not None else [])


def fidelity_study(space: ResolvedSpace) -> str:
    """The study the check trains ``space``'s fidelity into: ``<run>-fidelity-<fidelity key>``."""
    return f"{space.name}-fidelity-{space.fidelity_key()}"


def variant(space: ResolvedSpace, overrides: Sequence[str | tuple[list[str], Any]]) -> ResolvedSpace:
    """``space`` with ``--set``-style overrides applied on top (resolved again, data at hand).

    The profile and ``--set`` values ``space`` was loaded with stay as they are: the overrides are
    applied to its resolved document, not to the file.

    Raises:
        SpaceError: an override the space does not accept, naming the key.
    """
    from ..space._resolve import resolve  # noqa: PLC0415

    doc = space.spec.model_dump(mode="json")
    for item in overrides:
        parts, value = parse_override(item) if isinstance(item, str) else item
        apply_override(doc, list(parts), value)
    return resolve(read_space(doc), check_data=True, profile=space.profile)


def sample_schedules(space: ResolvedSpace, n: int, seed: int = 0) -> list[tuple[str, str | None, dict[str, int]]]:
    """The space's paper seeds, then ``n`` other schedules drawn uniformly at random (without repeats).

    Args:
        space: the resolved space.
        n: schedules to draw besides the seeds; fewer when the space holds fewer.
        seed: seed of the draw.

    Returns:
        ``(schedule id, paper name or None, parameter values)`` per schedule, seeds first.
    """
    pspace = space.params
    out: list[tuple[str, str | None, dict[str, int]]] = []
    taken: set[tuple[int, ...]] = set()
    for label, values in pspace.seeds:
        taken.add(pspace.key(values))
        out.append((pspace.schedule_id(values), label, dict(values)))
    left = pspace.size - len(taken)
    want = min(n, left)
    rng = random.Random(seed)
    if pspace.enumerable and want > left // 2:  # most of a small space: draw from the list of the rest
        rest = [v for v in pspace.all_values() if pspace.key(v) not in taken]
        picks = rng.sample(rest, want)
    else:
        picks = []
        while len(picks) < want:
            values = pspace.random_values(rng)
            if pspace.key(values) not in taken:
                taken.add(pspace.key(values))
                picks.append(values)
    for values in picks:
        out.append((pspace.schedule_id(values), None, dict(values)))
    return out


def stored_results(storage_url: str, fidelity_key: str) -> dict[str, float]:
    """Schedule id -> validation accuracy of every result stored at ``fidelity_key`` in any study of the storage.

    Only trials trained to the end count (COMPLETE, outcome evaluated or imported); an early-stopped
    trial's partial accuracy is not a result at this fidelity.
    """
    import optuna  # noqa: PLC0415
    from optuna.trial import TrialState  # noqa: PLC0415
    from ..engine._study_db import check_study_storage  # noqa: PLC0415
    from ..engine._study import open_storage  # noqa: PLC0415

    if not check_study_storage(storage_url, allow_empty=True):  # read-only look: nothing stored yet
        return {}
    storage = open_storage(storage_url)
    out: dict[str, float] = {}
    for frozen in storage.get_all_studies():
        if frozen.user_attrs.get(StudyAttr.FIDELITY_KEY) != fidelity_key:
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        names = list(study.metric_names or [])
        if "val_accuracy" not in names:
            continue
        i = names.index("val_accuracy")
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            view = TrialView(t)
            if view.outcome in (Outcome.EVALUATED, Outcome.IMPORTED) and t.values is not None:
                out.setdefault(view.schedule_id, float(t.values[i]))
    return out


def verdict(name: str, seed_tau: RankAgreement, against_tau: RankAgreement | None = None, against: str | None = None,
            se_points: float | None = None) -> str:  # fmt: skip
    """One sentence: whether a fidelity can rank the schedules of space ``name``.

    * the seed-to-seed tau's bootstrap interval reaches 0 or below: it **cannot** -- two training
      seeds order the schedules alike no better than chance;
    * its lower end is at least :data:`RANKS`: it **can** -- at least three pairs in four keep
      their order when only the training seed changes;
    * in between: it ranks them only **coarsely**.

    With a second fidelity its tau is added to the sentence.
    """
    t = seed_tau
    interval = f"Kendall τ {t.tau:.2f}, {100 * t.confidence:.0f} % interval {t.low:.2f} to {t.high:.2f}, {t.schedules} schedules"
    if not t.low > 0:
        head = (f"this fidelity cannot rank the schedules of {name}: two training seeds order them alike no better "
                f"than chance ({interval})")  # fmt: skip
    elif t.low >= RANKS:
        head = f"this fidelity can rank the schedules of {name}: two training seeds order them alike ({interval})"
    else:
        noise = f"; differences under ~{2 * math.sqrt(2) * se_points:.1f} points are noise" if se_points else ""
        head = (f"this fidelity ranks the schedules of {name} only coarsely: two training seeds agree on their order "
                f"more than by chance, but far from fully ({interval}){noise}")  # fmt: skip
    if against_tau is not None and against:
        a = against_tau
        agree = "agrees with" if a.low > 0 else "is not shown to agree with"
        head += (f"; its order {agree} the order at {against} (τ {a.tau:.2f}, interval {a.low:.2f} to {a.high:.2f})")
    return head + "."


def _quiet_tables(out: Callable[[Any], None]) -> Callable[[Any], None]:
    """The search's progress lines, indented; its Pareto tables left out (they mean nothing here)."""

    def say(item: Any) -> None:
        if isinstance(item, str):
            out(f"    {item}" if item else item)

    return say


def _train(
    space: ResolvedSpace, label: str, sample: list[tuple[str, str | None, dict[str, int]]], *, runs_dir: str | Path,
    storage_url: str, estimate: bool, out: Callable[[Any], None], trial_fn: Callable[..., None] | None,
) -> Measurement:  # fmt: skip
    """Train the sampled schedules ``space`` holds no result for, through the search; return every result."""
    from ._driver import run_search  # noqa: PLC0415

    key = space.fidelity_key()
    study = fidelity_study(space)
    known = stored_results(storage_url, key)
    todo = [(sid, name, values) for sid, name, values in sample if sid not in known]
    out(f"  {label}: {len(todo)} to train, {len(sample) - len(todo)} stored at this fidelity (study {study})")
    if todo:
        pspace = space.params
        seeds = [name or pspace.schedule(values).full_id for _, name, values in todo]
        run_space = variant(space, [(["seeds"], seeds), (["search", "trials"], len(todo)),
                                    (["search", "sampler"], "random"), (["search", "early_stopping"], "none")])  # fmt: skip
        result = run_search(run_space, runs_dir=runs_dir, storage=storage_url, fresh=True, estimate=estimate,
                            export=False, print_fn=_quiet_tables(out), trial_fn=trial_fn, study=study)  # fmt: skip
        if result.interrupted:
            raise KeyboardInterrupt
        if result.stop_reason:
            raise FidelityError(f"{label}: the search that trains this measurement stopped: {result.stop_reason}; "
                                "fix that and rerun the same command (every result stored so far is kept)")  # fmt: skip
        known = stored_results(storage_url, key)
    accuracy = {sid: known.get(sid) for sid, _, _ in sample}
    trained = sum(1 for sid, _, _ in todo if accuracy[sid] is not None)
    return Measurement(label, study, key, accuracy, trained, int(space.spec.data.val_size))


def _pooled_sd(rows: list[list[float]]) -> float:
    """Within-schedule standard deviation pooled over schedules (each row: one schedule's seeds)."""
    variances = [statistics.variance(r) for r in rows if len(r) > 1]
    return math.sqrt(sum(variances) / len(variances)) if variances else math.nan


def check_fidelity(
    space: ResolvedSpace,
    *,
    schedules: int = 12,
    seeds: int = 2,
    against: Sequence[str] = (),
    runs_dir: str | Path = "runs",
    storage: str | None = None,
    sample_seed: int = 0,
    estimate: bool = True,
    print_fn: Callable[[Any], None] | None = None,
    trial_fn: Callable[..., None] | None = None,
) -> FidelityReport:
    """Measure whether ``space``'s fidelity ranks its schedules reproducibly (see the module docstring).

    Args:
        space: the resolved space (:func:`search.load_space`), at the fidelity to check.
        schedules: schedules drawn at random besides the space's paper seeds.
        seeds: training seeds (``trainer.seed`` = the space's, then +1, +2 ...); at least 2.
        against: ``key=value`` overrides that make a second fidelity (``trainer.epochs=10``),
            trained once with the space's training seed.
        runs_dir: parent of run folders; the check uses the run's folder and storage.
        storage: SQLAlchemy URL overriding the run's storage.
        sample_seed: seed of the random draw of schedules.
        estimate: print the search's time estimate before each training round.
        print_fn: where progress and results go (default: a rich console).
        trial_fn: what a Tune trial runs (tests and benchmarks; default: the search's trainer).

    Returns:
        The :class:`FidelityReport` (also printed).

    Raises:
        SpaceError: bad arguments or overrides (naming them), a second fidelity equal to the
            space's, a run being searched by another process.
        FidelityError: a measurement's search stopped before its budget (e.g. every trial failed), or
            fewer than three schedules have a result in every measurement.

    Example:
        >>> from search import load_space, check_fidelity
        >>> space = load_space("spaces/nin.yaml", profile="cpu")          # doctest: +SKIP
        >>> report = check_fidelity(space, schedules=12, seeds=2)         # doctest: +SKIP
        >>> report.seed_tau.tau, report.verdict                           # doctest: +SKIP
    """
    from ..engine._study import default_storage  # noqa: PLC0415
    from ._estimate import console  # noqa: PLC0415

    start = time.time()
    out = print_fn or console().print
    if schedules < 1:
        raise SpaceError("--schedules", f"must be at least 1, got {schedules}")
    if seeds < 2:
        raise SpaceError("--seeds", f"needs at least 2 training seeds to compare, got {seeds}")
    space = space.with_data()
    url = storage or space.spec.storage or default_storage(Path(runs_dir) / space.name)
    base_seed = space.train.seed
    variants = [space if k == 0 else variant(space, [(["trainer", "seed"], base_seed + k)]) for k in range(seeds)]
    second = None
    if against:
        try:
            second = variant(space, list(against))
        except SpaceError as e:
            key = f"--against {e.key}" if e.key and e.key != "--set" else "--against"
            raise SpaceError(key, str(e).removeprefix(f"{e.key}: ")) from None
        if second.fidelity_key() == space.fidelity_key():
            raise SpaceError("--against", f"{' '.join(against)} changes nothing a result depends on (model, data, trainer)")
    sample = sample_schedules(space, schedules, sample_seed)
    n_seeds = sum(1 for _, name, _ in sample if name)
    d = space.spec.data
    out(f"fidelity check of {space.name}{f' (profile {space.profile})' if space.profile else ''}: {len(sample)} schedules "
        f"({n_seeds} paper seeds + {len(sample) - n_seeds} drawn at random, sample seed {sample_seed}); training seeds "
        f"{', '.join(str(base_seed + k) for k in range(seeds))}; {f'{d.subset:,}' if d.subset else 'all'} training images, {d.val_size:,} "
        f"validation images, {space.train.epochs} epoch(s); storage {url}")  # fmt: skip
    against_label = " ".join(against) if against else None

    import ray  # noqa: PLC0415

    from ._driver import _ray_init  # noqa: PLC0415

    started = _ray_init(None) if not ray.is_initialized() else False
    try:
        measured = [_train(v, f"seed {v.train.seed}", sample, runs_dir=runs_dir, storage_url=url, estimate=estimate,
                           out=out, trial_fn=trial_fn) for v in variants]  # fmt: skip
        other = (_train(second, against_label or "", sample, runs_dir=runs_dir, storage_url=url, estimate=estimate,
                        out=out, trial_fn=trial_fn) if second is not None else None)  # fmt: skip
    finally:
        if started:
            ray.shutdown()
    return _report(space, sample, measured, other, against_label, time.time() - start, out)


def _report(
    space: ResolvedSpace, sample: list[tuple[str, str | None, dict[str, int]]], measured: list[Measurement],
    other: Measurement | None, against_label: str | None, seconds: float, out: Callable[[Any], None],
) -> FidelityReport:  # fmt: skip
    from deeproots import accuracy_se  # noqa: PLC0415

    every = measured + ([other] if other is not None else [])
    compared = [sid for sid, _, _ in sample if all(m.accuracy.get(sid) is not None for m in every)]
    notes = []
    missing = [sid for sid, _, _ in sample if sid not in compared]
    if missing:
        notes.append(f"{len(missing)} schedule(s) without a result in every measurement (failed trials?) left out: "
                     f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")  # fmt: skip
    if len(compared) < 3:
        raise FidelityError(f"only {len(compared)} schedule(s) have a result in every measurement (failed trials?): "
                            "Kendall's tau needs at least 3; rerun with more --schedules")  # fmt: skip
    seed_cols = [[m.accuracy[sid] for sid in compared] for m in measured]
    rows = [[m.accuracy[sid] for m in measured] for sid in compared]
    mean_acc = statistics.fmean(v for col in seed_cols for v in col)  # type: ignore[misc]
    n_val = measured[0].val_images
    se = accuracy_se(mean_acc, n_val)
    seed_sd = _pooled_sd(rows)  # type: ignore[arg-type]
    means = [statistics.fmean(r) for r in rows]  # type: ignore[arg-type]
    spread = statistics.stdev(means)
    seed_tau = rank_agreement(*seed_cols)  # type: ignore[arg-type]
    against_tau = rank_agreement(seed_cols[0], [other.accuracy[sid] for sid in compared]) if other else None  # type: ignore[misc]
    sentence = verdict(space.name, seed_tau, against_tau, against_label, 100 * se)
    names = {sid: name for sid, name, _ in sample}
    report = FidelityReport(space.name, [(sid, name) for sid, name, _ in sample], measured, other, compared, se,
                            seed_sd, spread, seed_tau, against_tau, sentence, seconds, notes)  # fmt: skip
    _print(report, names, n_val, mean_acc, out)
    return report


def _print(report: FidelityReport, names: dict[str, str | None], n_val: int, mean_acc: float, out: Callable[[Any], None]) -> None:
    cols = report.measurements
    width = max(len(sid) for sid in report.compared)
    out("")
    out("validation accuracy (%) of each schedule:")
    out(f"  {'schedule':<{width}}  {'name':<8}" + "".join(f"  {m.label:>{max(8, len(m.label))}}" for m in cols))
    for sid, _ in report.schedules:
        cells = "".join(
            f"  {('-' if m.accuracy.get(sid) is None else f'{100 * m.accuracy[sid]:.1f}'):>{max(8, len(m.label))}}" for m in cols
        )
        out(f"  {sid:<{width}}  {names.get(sid) or '':<8}{cells}")
    t = report.seed_tau
    seeds = " vs ".join(m.label for m in report.seeds)
    out("")
    out(f"standard error of one accuracy: {100 * report.se:.2f} points (binomial: {n_val:,} validation images at "
        f"{100 * mean_acc:.1f} % mean accuracy); of a difference of two: {100 * math.sqrt(2) * report.se:.2f} points")  # fmt: skip
    out(f"seed-to-seed standard deviation of one accuracy: {100 * report.seed_sd:.2f} points (pooled over "
        f"{len(report.compared)} schedules); the schedules' mean accuracies spread with s.d. {100 * report.spread_sd:.2f} points")  # fmt: skip
    p = f"; p = {t.p_value:.2g}" if not math.isnan(t.p_value) else ""
    out(f"Kendall τ {seeds}: {t.tau:.2f} ({100 * t.confidence:.0f} % paired bootstrap interval {t.low:.2f} to {t.high:.2f}"
        f"{p}; {t.schedules} schedules)")  # fmt: skip
    if report.against_tau is not None and report.against is not None:
        a = report.against_tau
        out(f"Kendall τ {report.seeds[0].label} vs {report.against.label}: {a.tau:.2f} ({100 * a.confidence:.0f} % "
            f"interval {a.low:.2f} to {a.high:.2f}; p = {a.p_value:.2g})")  # fmt: skip
    for note in report.notes:
        out(f"note: {note}")
    stored = sum(1 for m in cols for v in m.accuracy.values() if v is not None) - report.trained
    out(f"trained {report.trained} schedule(s) now, {stored} result(s) stored already; wall time {duration(report.wall_seconds)}")
    out(f"verdict: {report.verdict}")
