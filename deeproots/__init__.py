"""deeproots: root-module networks (Ioannou et al., CVPR 2017), grouping schedules, their cost, and training.

The domain layer of the project: plain PyTorch, usable without Ray or Optuna.

Example:
    >>> import deeproots
    >>> model = deeproots.build_model("nin", schedule="root-8")
    >>> cost = deeproots.count_cost(model, (3, 32, 32))
    >>> cost.flops, cost.params
    (103343498, 314954)
"""

from __future__ import annotations

from ._cost import Cost, Latency, compare_latency, count_cost, fold_batchnorm, measure_latency
from ._cost_table import CostTable
from ._version import __version__, provenance
from ._build import build_model
from .models import drop_aux, list_architectures
from .schedules import LayerInfo, Schedule, describe_layers, paper_schedules, resolve_schedule

__all__ = [
    "__version__",
    "provenance",
    "build_model",
    "drop_aux",
    "list_architectures",
    "describe_layers",
    "resolve_schedule",
    "paper_schedules",
    "LayerInfo",
    "Schedule",
    "count_cost",
    "Cost",
    "CostTable",
    "measure_latency",
    "compare_latency",
    "fold_batchnorm",
    "Latency",
]

# --- training: data sets and the trainer (deeproots/data, deeproots/training.py) ---
from .data import DataBundle, DataError, DatasetInfo, FolderSplit, TensorSplit, dataset_info, load_data  # noqa: E402
from .training import (  # noqa: E402
    EpochResult,
    FitResult,
    NonFiniteLossError,
    StepProgress,
    TrainConfig,
    evaluate,
    evaluate_per_image,
    fit,
    native_bf16,
    resolve_precision,
)

__all__ += [
    "load_data",
    "dataset_info",
    "DatasetInfo",
    "DataError",
    "DataBundle",
    "TensorSplit",
    "FolderSplit",
    "TrainConfig",
    "fit",
    "evaluate",
    "evaluate_per_image",
    "EpochResult",
    "FitResult",
    "StepProgress",
    "resolve_precision",
    "native_bf16",
    "NonFiniteLossError",
]

from ._exported import ExportedConfig, load_exported  # noqa: E402  (exported Pareto models: YAML + safetensors)

__all__ += ["ExportedConfig", "load_exported"]

from ._per_image import accuracy_se, pack_correct, unpack_correct  # noqa: E402  (per-image results, standard error)

__all__ += ["pack_correct", "unpack_correct", "accuracy_se"]
