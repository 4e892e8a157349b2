"""``python -m search.run SPACE``: run, resume or dry-run the search a space file describes.

Example:
    python -m search.run spaces/nin.yaml --set data.root=/data --set search.trials=20
    python -m search.run spaces/nin-spatial.yaml --dry-run
    optuna-dashboard sqlite:///runs/nin/study.db

Exit status: 0 done (or dry run), 1 a runtime error (or the search stopped itself: trials failing
the same way, a region of constraint breaches -- the reason is printed), 2 an invalid space,
override, option or data, or another driver holding the study (one line on stderr, nothing
written), 130 stopped by Ctrl-C (everything finished so far is kept; rerunning the same command
resumes).
"""

from __future__ import annotations

import argparse
import sys

from ._cli import OneLineParser
from ._text import os_error_line
from .space._schema import SpaceError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.run",
        description="Search grouping schedules: Ray Tune trials, Optuna multi-objective Pareto search.",
        epilog="Keys of a space file: spaces/README.md. Rerunning the same command resumes the run.",
    )
    p.add_argument("space", help="search-space YAML file (spaces/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a key of the space (value parsed as YAML); repeatable")  # fmt: skip
    p.add_argument("--name", help="run name (default: the space's name); the run lives in RUNS/NAME/")
    p.add_argument("--storage", help="SQLAlchemy URL of the study (default sqlite:///runs/NAME/study.db)")
    p.add_argument("--storage-path", help="where trials keep their checkpoints (Ray Tune's storage_path): a path every "
                                          "node sees or a URI such as s3://bucket/prefix (default runs/NAME/ray)")  # fmt: skip
    p.add_argument("--address", help="address of an existing Ray cluster (ray start --head); default: a local one")
    p.add_argument("--profile", help="hardware profile of the space (its profiles: keys); default: gpu when the machine "
                                     "(or the cluster at --address) has a GPU, else cpu")  # fmt: skip
    p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and describe the space (and how it differs from an existing run's); train nothing, write nothing")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="start a new study when the run exists with another space")
    p.add_argument("--no-estimate", action="store_true", help="skip the timed batch and the run-time estimate")
    p.add_argument("--no-export", action="store_true", help="skip the export step at the end")
    return p


def choose_profile(names: list[str], requested: str | None, address: str | None) -> tuple[str | None, str]:
    """The hardware profile to apply and why: ``--profile``, else ``gpu`` when GPUs are there, else ``cpu``.

    With ``address`` the GPUs counted are the Ray cluster's (``ray.cluster_resources()``), else this
    machine's. A space without profiles gets none.

    Raises:
        SpaceError: ``--profile`` names a profile the space does not have.
    """
    if requested is not None:
        if requested not in names:
            raise SpaceError("--profile", f"the space has no profile {requested!r}; its profiles: {', '.join(names) or 'none'}")
        return requested, "chosen with --profile"
    if not names:
        return None, ""
    if address is not None:
        import ray  # noqa: PLC0415

        from .runner._driver import _ray_init  # noqa: PLC0415

        _ray_init(address)
        gpus, where = int(ray.cluster_resources().get("GPU", 0)), f"the Ray cluster at {address}"
    else:
        import torch  # noqa: PLC0415

        gpus, where = torch.cuda.device_count(), "this machine"
    want = "gpu" if gpus else "cpu"
    other = "cpu" if gpus else "gpu"
    why = f"{where} has {gpus} GPU(s)" if gpus else f"{where} has no GPU"
    if want not in names:
        return None, f"{why}, and the space has no {want!r} profile: its own settings apply"
    hint = f" (--profile {other} for the other one)" if other in names else ""
    return want, why + hint


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run; returns the exit status.

    Example:
        >>> from search.run import main
        >>> main(["spaces/nin-spatial.yaml", "--dry-run", "--no-estimate"])  # doctest: +SKIP
        0
    """
    args = _parser().parse_args(argv)
    joined = _ray_running()
    try:
        return _run(args)
    finally:
        if not joined and _ray_running():  # Ray joined or started here (checks, the search): leave it as found
            import ray  # noqa: PLC0415

            ray.shutdown()


def _ray_running() -> bool:
    """Whether this process is connected to Ray (without importing Ray when nothing has)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _run(args: argparse.Namespace) -> int:
    try:
        from .space._load import profile_names, read_space  # noqa: PLC0415

        read_space(args.space, args.overrides, name=args.name)  # schema errors first: no torch, no Ray yet
        profile, why = choose_profile(profile_names(args.space), args.profile, args.address)
        if profile is not None or why:
            print(f"profile {profile or '(none)'}: {why}", flush=True)
        from .space import load_space  # noqa: PLC0415 (imports torch only after the schema checks)

        space = load_space(args.space, args.overrides, name=args.name, check_data=False, profile=profile)
        from .engine._study import make_sampler, plan_run  # noqa: PLC0415 (heavy imports after the cheap checks)

        make_sampler(space, space.spec.search.trials)
        if space.spec.confirm.seeds:
            from .runner._confirm import confirm_spaces  # noqa: PLC0415

            confirm_spaces(space, check_data=False)  # confirm.overrides validated like --set, before anything runs
        plan = plan_run(space, runs_dir=args.runs_dir, storage=args.storage, fresh=args.fresh, refuse=not args.dry_run,
                        storage_path=args.storage_path)  # fmt: skip
        if args.dry_run:
            from .runner._estimate import dry_run  # noqa: PLC0415

            dry_run(space, plan, estimate=not args.no_estimate)
            return 0
        from .runner._driver import check_resources  # noqa: PLC0415

        check_resources(space, args.address)
        space = space.with_data()  # last: it may download; every other check has passed
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the checks above did not foresee: still one line
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    from .runner._driver import run_search  # noqa: PLC0415

    try:
        result = run_search(
            space, runs_dir=args.runs_dir, storage=args.storage, address=args.address, fresh=args.fresh,
            estimate=not args.no_estimate, export=not args.no_export, storage_path=args.storage_path,
        )  # fmt: skip
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk, the network, a folder removed under the run: the study keeps what was recorded
        print(f"error: {os_error_line(e)}; rerun the same command to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped (Ctrl-C); rerun the same command to resume", file=sys.stderr)
        return 130
    if result.interrupted:
        return 130
    return 1 if result.stop_reason else 0


if __name__ == "__main__":
    sys.exit(main())
