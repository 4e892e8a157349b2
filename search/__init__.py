"""search: the grouping-schedule search -- Ray Tune trials, Optuna multi-objective Pareto front.

A space file (``spaces/*.yaml``, keys in ``spaces/README.md``) names the architecture, the layers
searched and their group choices, the paper schedules to seed with, the objectives (validation
accuracy up; FLOPs, parameters, latency down), constraints, data, trainer, sampler and budget.
:func:`load_space` validates and resolves it; :func:`run_search` runs or resumes it with the study in
SQLite (or any SQLAlchemy URL); ``python -m search.run`` is the command line.

The package is laid out by job::

    search/space/     the space file -> schema -> parameters -> one resolved bundle
    search/engine/    the run record, the study and samplers, the Tune searcher and scheduler
    search/runner/    the driver and the trial a worker runs
    search/outputs/   export, figures, reports, console tables
    search/run.py, search/export.py, search/fidelity.py   the command lines

Names are imported on first use (PEP 562), so ``python -m search.run --help`` and a schema error
need neither torch nor Ray.

Example:
    >>> from search import load_space
    >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=8"], check_data=False)
    >>> space.spec.search.trials, space.objectives
    (8, ('val_accuracy', 'flops', 'params'))
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_EXPORTS = {
    "SearchSpace": "search.space._schema",
    "SpaceError": "search.space._schema",
    "load_space": "search.space._load",
    "read_space": "search.space._load",
    "ResolvedSpace": "search.space._resolve",
    "ParamSpace": "search.space._params",
    "Param": "search.space._params",
    "build_param_space": "search.space._params",
    "OBJECTIVES": "search.engine.record",
    "DIRECTIONS": "search.engine.record",
    "Outcome": "search.engine.record",
    "Attr": "search.engine.record",
    "StudyMeta": "search.engine.record",
    "TrialView": "search.engine.record",
    "ScheduleSearch": "search.engine._searcher",
    "RunPaths": "search.engine._study",
    "open_storage": "search.engine._study",
    "TIE_ALPHA": "search.engine.noise",
    "McNemar": "search.engine.noise",
    "mcnemar": "search.engine.noise",
    "ScoredSchedule": "search.engine.noise",
    "Tie": "search.engine.noise",
    "TiedBand": "search.engine.noise",
    "tied_band": "search.engine.noise",
    "RankAgreement": "search.engine.noise",
    "rank_agreement": "search.engine.noise",
    "run_search": "search.runner._driver",
    "check_fidelity": "search.runner._fidelity",
    "run_confirm": "search.runner._confirm",
    "ConfirmResult": "search.runner._confirm",
    "Confirmation": "search.engine._confirm",
    "ConfirmedSchedule": "search.engine._confirm",
    "FidelityReport": "search.runner._fidelity",
    "SearchResult": "search.runner._driver",
    "dry_run": "search.runner._estimate",
    "estimate_time": "search.runner._estimate",
    "weights_filename": "search.runner._trial",
    "export_run": "search.outputs._export",
    "export_study": "search.outputs._export",
    "ExportResult": "search.outputs._export",
    "ExportError": "search.outputs._locate",
    "pareto_rows": "search.outputs._tables",
    "state_counts": "search.outputs._tables",
    "outcome_counts": "search.outputs._tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
