"""``python -m search.fidelity SPACE``: can the space's fidelity rank its schedules at all?

Trains a random sample of the space's schedules (plus its paper seeds) with two training seeds at
the space's fidelity -- and with ``--against``, once more at a second fidelity -- and prints the
standard error of one accuracy, Kendall's tau between the seeds with a bootstrap interval, tau
against the second fidelity, and one sentence: whether this fidelity can rank the schedules of
this space. Its results are stored in the run's storage (one study per fidelity), so a later
``python -m search.run`` at the same fidelity imports them instead of training them again.

Example:
    python -m search.fidelity spaces/nin.yaml --schedules 12 --set data.root=../shared/data
    python -m search.fidelity spaces/nin.yaml --profile cpu --against trainer.epochs=6

Exit status: 0 done, 1 a runtime error (one line when no verdict is possible: a measurement's
search stopped, or too few schedules have results), 2 an invalid space, override or option (one line on
stderr, nothing trained), 130 stopped by Ctrl-C (what finished is kept; rerunning trains the rest).
"""

from __future__ import annotations

import argparse
import sys

from ._cli import OneLineParser
from .space._schema import SpaceError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.fidelity",
        description="Measure whether a space's fidelity ranks its schedules: two training seeds, Kendall's tau.",
        epilog="Results are stored in the run's storage; a search at the same fidelity imports them.",
    )
    p.add_argument("space", help="search-space YAML file (spaces/*.yaml)")
    p.add_argument("--schedules", type=int, default=12, metavar="N",
                   help="schedules drawn at random besides the space's paper seeds (default 12)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=2, metavar="K",
                   help="training seeds (trainer.seed, +1, ...) at the space's fidelity (default 2)")  # fmt: skip
    p.add_argument("--against", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="a second fidelity: an override of the space (trainer.epochs=10), trained once; repeatable")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a key of the space (value parsed as YAML); repeatable")  # fmt: skip
    p.add_argument("--profile", help="hardware profile of the space (default: gpu when the machine has a GPU, else cpu)")
    p.add_argument("--name", help="run name (default: the space's name); results go to RUNS/NAME/'s storage")
    p.add_argument("--storage", help="SQLAlchemy URL (default: the run's, sqlite:///runs/NAME/study.db)")
    p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the random draw of schedules (default 0)")
    p.add_argument("--no-estimate", action="store_true", help="skip the timed batch and the run-time estimates")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the check; returns the exit status.

    Example:
        >>> from search.fidelity import main
        >>> main(["spaces/nin.yaml", "--schedules", "12"])  # doctest: +SKIP
        0
    """
    args = _parser().parse_args(argv)
    try:
        if args.schedules < 1:
            raise SpaceError("--schedules", f"must be at least 1, got {args.schedules}")
        if args.seeds < 2:
            raise SpaceError("--seeds", f"needs at least 2 training seeds to compare, got {args.seeds}")
        from .space._load import parse_override, profile_names, read_space  # noqa: PLC0415

        for item in args.against:
            try:
                parse_override(item)
            except SpaceError as e:
                raise SpaceError("--against", str(e).removeprefix("--set: ")) from None
        read_space(args.space, args.overrides, name=args.name)  # schema errors first: no torch, no Ray yet
        from .run import choose_profile  # noqa: PLC0415

        profile, why = choose_profile(profile_names(args.space), args.profile, None)
        if profile is not None or why:
            print(f"profile {profile or '(none)'}: {why}", flush=True)
        from .space import load_space  # noqa: PLC0415

        space = load_space(args.space, args.overrides, name=args.name, check_data=False, profile=profile)
        if space.params.size < 3:
            raise SpaceError("groups", f"the space holds {space.params.size} distinct schedule(s); Kendall's tau ranks "
                                       "at least 3: a fidelity check needs a space with more choices")  # fmt: skip
        from .engine._study import plan_run  # noqa: PLC0415
        from .runner._driver import check_resources  # noqa: PLC0415

        plan_run(space, runs_dir=args.runs_dir, storage=args.storage, refuse=False)  # the storage opens
        check_resources(space, times_latency=False)  # accuracy only
        space = space.with_data()  # last: it may download
        from .runner._fidelity import check_fidelity  # noqa: PLC0415

        check_fidelity(space, schedules=args.schedules, seeds=args.seeds, against=args.against, runs_dir=args.runs_dir,
                       storage=args.storage, sample_seed=args.sample_seed, estimate=not args.no_estimate)  # fmt: skip
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # FidelityError: no verdict possible (one line; what finished is kept)
        from .runner._fidelity import FidelityError  # noqa: PLC0415

        if not isinstance(e, FidelityError):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped (Ctrl-C); rerun the same command to train the rest", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
