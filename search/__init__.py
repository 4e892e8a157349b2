"""search: the grouping-schedule search -- Ray Tune trials, Optuna multi-objective Pareto front.

A space file (``spaces/*.yaml``, keys in ``spaces/README.md``) names the architecture, the layers
searched and their group choices, the paper schedules to seed with, the objectives (validation
accuracy up; FLOPs, parameters, latency down), constraints, data, trainer, sampler and budget.
:func:`load_space` validates it; :func:`run_search` runs or resumes it with the study in SQLite (or
any SQLAlchemy URL); ``python -m search.run`` is the command line.

Example:
    >>> from search import load_space
    >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=8"])
    >>> space.search.trials, space.objectives
    (8, ['val_accuracy', 'flops', 'params'])
"""

from __future__ import annotations

from ._config import DIRECTIONS, OBJECTIVES, SearchSpace, SpaceError, load_space
from ._export import ExportError, ExportResult, export_run, export_study
from ._report import outcome_counts, pareto_rows, state_counts
from ._runner import SearchResult, dry_run, estimate_time, run_search
from ._searcher import Outcome, ScheduleSearch
from ._space import Param, ParamSpace, build_param_space
from ._study import RunPaths, open_storage, read_run
from ._trainable import weights_filename

__all__ = [
    "SearchSpace",
    "SpaceError",
    "load_space",
    "OBJECTIVES",
    "DIRECTIONS",
    "ParamSpace",
    "Param",
    "build_param_space",
    "run_search",
    "dry_run",
    "estimate_time",
    "SearchResult",
    "ScheduleSearch",
    "Outcome",
    "RunPaths",
    "read_run",
    "open_storage",
    "pareto_rows",
    "state_counts",
    "outcome_counts",
    "weights_filename",
    "export_run",
    "export_study",
    "ExportResult",
    "ExportError",
]
