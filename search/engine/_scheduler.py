"""Early stopping of weak trials: Ray Tune schedulers deciding at each rung (epoch)."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

__all__ = ["EarlyStopper"]


class EarlyStopper(AsyncHyperBandScheduler):
    """ASHA on ``val_accuracy`` per epoch, remembering which trials it stopped early."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(time_attr="epoch", metric="val_accuracy", mode="max", **kwargs)
        self.stopped: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get("status") == "training":
            self.stopped.add(trial.trial_id)
        return action
