"""``python -m search.confirm RUN``: retrain a run's front and its tied band with K seeds at a higher fidelity.

Runs the confirmation stage of a finished search on its own (``python -m search.run`` runs it at the
end when the space has ``confirm.seeds`` > 0): the front plus the schedules statistically tied with
it, best first and at most ``confirm.max_schedules``, each trained with ``confirm.seeds`` training
seeds at the fidelity ``confirm.overrides`` makes, as Ray Tune trials of the search's own trial
function. Results go to the companion study ``<study>-confirm`` in the run's storage; then the run is
exported again, its Pareto set the confirmed front (mean ± s.d. over the seeds, test accuracy of each
seed's model, Kendall's tau between the two fidelities).

The confirm block is the one the run's last confirmation ran with, else the run's space's; ``--set
confirm.KEY=VALUE`` changes it (only ``confirm.*`` keys, and ``data.root``: the search's space is the
run's). Rerunning resumes: nothing recorded is trained again.

Example:
    python -m search.confirm runs/nin --set confirm.seeds=2 --set confirm.max_schedules=4 \\
        --set 'confirm.overrides={trainer.epochs: 4}'

Exit status: 0 done, 1 a runtime error or failed trials (rerun to retry them), 2 an invalid run,
override or option (one line on stderr, nothing trained), 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._cli import OneLineParser
from .space._schema import SpaceError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.confirm",
        description="Retrain a run's front and its tied band with several seeds at a higher fidelity.",
        epilog="Results go to the companion study <study>-confirm; rerunning resumes.",
    )
    p.add_argument("run", help="run folder (runs/NAME)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="confirm.KEY=VALUE",
                   help="override a key of the confirm block (value parsed as YAML); repeatable")  # fmt: skip
    p.add_argument("--study", help="another study of the run (default: the run's, from run.json)")
    p.add_argument("--address", help="address of an existing Ray cluster; default: a local one")
    p.add_argument("--no-export", action="store_true", help="skip the export at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the confirmation; returns the exit status.

    Example:
        >>> from search.confirm import main
        >>> main(["runs/nin", "--set", "confirm.seeds=2"])  # doctest: +SKIP
        0
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    try:
        from .space._load import parse_override  # noqa: PLC0415

        sets = []
        for item in args.overrides:
            parts, value = parse_override(item)
            if parts[0] != "confirm" and parts != ["data", "root"]:
                raise SpaceError(f"--set {'.'.join(parts)}", "python -m search.confirm takes confirm.* keys (and data.root) "
                                 "only: the search's space is the run's")  # fmt: skip
            sets.append((parts, value))
        space, target = _load_run(Path(args.run), args.study, sets)
        if space.spec.confirm.seeds < 1:
            raise SpaceError("confirm.seeds", "is 0: nothing to confirm; set it to the training seeds per schedule (--set confirm.seeds=2)")
        from .runner._confirm import confirm_spaces  # noqa: PLC0415

        confirm_spaces(space, check_data=False)  # confirm.overrides validated before anything is written
        from .runner._driver import check_resources  # noqa: PLC0415

        check_resources(space, args.address, times_latency=False)  # costs were recorded by the search
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .runner._confirm import locked_confirm  # noqa: PLC0415

    try:
        # the run's driver lock (in its database, with a heartbeat) for the whole confirmation: a
        # second driver is refused with exit 2, nothing written
        result = locked_confirm(space, args.run, target[0], target[1], address=args.address, storage_path=target[2])
        if not args.no_export and result.confirmation.schedules and not result.interrupted:
            from .outputs._export import export_run  # noqa: PLC0415

            export_run(args.run, study=args.study)
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped (Ctrl-C); rerun the same command to finish (nothing recorded is trained again)", file=sys.stderr)
        return 130
    return 1 if result.interrupted else 0


def _load_run(run: "Path", study: str | None, sets: list) -> tuple["object", tuple[str, str, str | None]]:  # noqa: UP037
    """The run's space with its confirm block (last used, else the space's) and ``sets``;
    (space, (storage, study, Tune storage_path from run.json or None))."""
    import optuna  # noqa: PLC0415

    from .engine._confirm import find_confirm_study  # noqa: PLC0415
    from .engine._study_db import StorageError, check_study_storage  # noqa: PLC0415
    from .engine._study import open_storage, read_run  # noqa: PLC0415
    from .engine.record import RecordError, StudyAttr, StudyMeta  # noqa: PLC0415
    from .outputs._locate import ExportError, locate_run  # noqa: PLC0415
    from .space import load_space  # noqa: PLC0415
    from .space._load import apply_override  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        target = locate_run(run, study)
        check_study_storage(target.storage_url)  # read-only: never adds Optuna's tables to another database
        storage = open_storage(target.storage_url)
        names = [s.study_name for s in storage.get_all_studies()]
        name = target.study_name or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise ExportError(f"{run}: no study {name!r} in {target.storage_url}; studies there: {', '.join(names) or 'none'}")
        search = optuna.load_study(study_name=name, storage=storage)
        meta = StudyMeta.read(search)
    except (ExportError, RecordError, StorageError) as e:
        raise SpaceError("", str(e)) from None
    doc = dict(meta.space)
    companion = find_confirm_study(storage, search)
    last = (companion.user_attrs.get(StudyAttr.CONFIRM) if companion is not None else None) or {}
    if last:
        doc["confirm"] = {k: last[k] for k in ("seeds", "max_schedules", "overrides", "alpha") if k in last}
    for parts, value in sets:
        if parts[:2] == ["confirm", "overrides"] and len(parts) > 2:  # confirm.overrides.trainer.epochs=4
            block = doc.setdefault("confirm", {})
            block["overrides"] = {**(block.get("overrides") or {}), ".".join(parts[2:]): value}
        else:
            apply_override(doc, parts, value)
    space = load_space(doc, check_data=False)
    recorded = read_run(run)  # checked by locate_run above; the folder's own ray/ when it lies in it
    return space, (target.storage_url, name, (recorded or {}).get("storage_path") or None)


if __name__ == "__main__":
    sys.exit(main())
