"""``python -m search.export RUN``: the Pareto set of a search as configs, weights, report and plots.

Example:
    python -m search.export runs/nin
    python -m search.export runs/nin --onnx
    python -m search.export --storage sqlite:///runs/nin/study.db --study nin --out /tmp/nin-export

Writes ``RUN/export/``: one ``<id>.yaml`` + ``<id>.safetensors`` per Pareto-optimal schedule (load
with ``deeproots.load_exported``), ``pareto.csv``, ``report.md``, PNG and HTML figures; each model
is evaluated once on the test set. The figures and a note with the Pareto table are attached to the
study for ``optuna-dashboard``. Safe while the search still writes to the same SQLite file.

Exit status: 0 done; 2 bad input (no study in the folder, unknown study name, a study with no
finished trial, data that cannot be found), one line on stderr; 1 any other error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING, Any

from ._cli import OneLineParser
from .outputs._locate import ExportError

if TYPE_CHECKING:
    from .outputs._export import ExportResult

__all__ = ["main", "export_run", "export_study", "ExportError", "ExportResult"]  # noqa: F822 (PEP 562 below)


def __getattr__(name: str):  # noqa: ANN202 (PEP 562: the export's heavy imports wait until used)
    if name in ("export_run", "export_study", "ExportResult"):
        from .outputs import _export  # noqa: PLC0415

        return getattr(_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m search.export", description="Export the Pareto set of a search: configs, weights, test accuracy, plots, report.")  # fmt: skip
    p.add_argument("run", nargs="?", help="run folder (runs/<name>), holding run.json or study.db")
    p.add_argument("--storage", help="SQLAlchemy URL of the study (instead of RUN)")
    p.add_argument("--study", help="study name (default: the run's; required with --storage if it holds several)")
    p.add_argument("--out", help="output folder (default RUN/export; required with --storage)")
    p.add_argument("--run-dir", help="with --storage: the run folder the trials' weights paths are relative to")
    p.add_argument("--onnx", action="store_true", help="also write an ONNX file per model, checked against PyTorch")
    p.add_argument("--no-test", action="store_true", help="skip the test-set evaluation")
    p.add_argument("--data-root", help="where the data set is, when not where the search had it")
    p.add_argument("--no-dashboard", action="store_true", help="do not attach figures and a note to the study")
    return p


def _check_paths(args: argparse.Namespace) -> str | None:
    """What is wrong with the paths given (None: nothing), checked before any work: the storage URL,
    ``--out`` (a folder, or one that can be created), ``--data-root`` (an existing folder)."""
    from pathlib import Path  # noqa: PLC0415

    from .engine._study_db import StorageError, check_storage_url  # noqa: PLC0415
    from .engine._trial_storage import folder_problem  # noqa: PLC0415

    if args.storage is not None:
        try:
            check_storage_url(args.storage)
        except StorageError as e:
            return str(e)
    if args.out is not None:
        why = folder_problem(Path(args.out))
        if why:
            return f"--out {args.out}: {why}; give a folder (existing, or one that can be created)"
    if args.data_root is not None and not Path(args.data_root).is_dir():
        what = "is a file, not a folder" if Path(args.data_root).exists() else "does not exist"
        return f"--data-root {args.data_root} {what}; give the folder that holds the data set"
    return None


def _one_line_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and export; returns the exit status.

    Example:
        >>> from search.export import main
        >>> main(["runs/nin"])  # doctest: +SKIP
        0
    """
    warnings.formatwarning = _one_line_warning
    args = _parser().parse_args(argv)
    if args.run is None and args.storage is None:
        print("error: give a run folder (RUN) or --storage URL --study NAME --out DIR; neither was given", file=sys.stderr)
        return 2
    if args.run is not None and args.storage is not None:
        print("error: give a run folder (RUN) or --storage URL --study NAME --out DIR, not both", file=sys.stderr)
        return 2
    if args.storage is not None and args.out is None:
        print("error: --storage needs --out DIR (where to write)", file=sys.stderr)
        return 2
    problem = _check_paths(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    common = dict(onnx=args.onnx, test=not args.no_test, data_root=args.data_root, dashboard=not args.no_dashboard)
    from .outputs._export import export_run, export_study  # noqa: PLC0415

    try:
        if args.run is not None:
            export_run(args.run, study=args.study, out_dir=args.out, **common)
        else:
            export_study(args.storage, args.study, args.out, run_dir=args.run_dir, **common)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
