"""A test-only architecture, ``nin_faulty``: NIN whose forward misbehaves for chosen schedules.

Registered in the test driver and, through Ray's ``worker_process_setup_hook``, in every worker, so
a search can meet a trial that raises (non-finite loss) or one that cannot learn (ASHA fodder).

* ``conv2a`` with 4 groups: the logits are NaN -> the trainer raises ``NonFiniteLossError``;
* ``conv3a`` with 4 groups: the logits are constant -> chance accuracy.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

NAME = "nin_faulty"


class _Faulty(nn.Module):
    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        self.inner = inner
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "constant":
            return y * 0.0
        return y


def _build(groups: Mapping[str, int], num_classes: int, **kwargs: Any) -> nn.Module:
    from deeproots.models.nin import NIN

    inner = NIN(num_classes, groups, **kwargs)
    if groups.get("conv2a") == 4:
        return _Faulty(inner, "nan")
    if groups.get("conv3a") == 4:
        return _Faulty(inner, "constant")
    return inner


def register() -> None:
    """Register ``nin_faulty`` (idempotent)."""
    from deeproots.models import get_arch, list_architectures, register_model

    if NAME in list_architectures():
        return
    spec = get_arch("nin")
    register_model(
        NAME, input_size=spec.input_size, num_classes=spec.num_classes, stage_of=spec.stage_of,
        families=spec.families, paper_n=spec.paper_n, description="test: NIN that fails on purpose",
    )(_build)
