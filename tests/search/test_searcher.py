"""The searcher's bookkeeping, driven by hand (no Ray): budget, duplicates, ASHA, constraints, failures, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search import SpaceError, load_space
from search.engine._scheduler import EarlyStopper
from search.engine._searcher import ScheduleSearch
from search.engine.record import Outcome
from search.engine._study import make_sampler, open_storage, plan_run, prepare_study
from tests.search.conftest import tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make(tmp_path: Path, stopper: EarlyStopper | None = None, fresh: bool = False, **over: Any) -> tuple[ScheduleSearch, Any]:
    space = load_space(tiny(**over))
    pspace = space.params
    url = f"sqlite:///{tmp_path}/study.db"
    plan = plan_run(space, runs_dir=tmp_path, storage=url, fresh=fresh)
    storage = open_storage(url)
    info = prepare_study(plan, space, storage, {"git_revision": "test"})
    sampler = make_sampler(space, space.spec.search.trials, offset=len(optuna.load_study(study_name=plan.paths.study_name, storage=storage).trials))
    s = ScheduleSearch(space, plan.paths.study_name, storage, sampler, space.spec.search.trials, stopper,
                       run_dir=str(tmp_path), provenance={"git_revision": "test"})  # fmt: skip
    s.resume_from_checkpoint(info["checkpoints"])
    return s, pspace


def result(status: str = "done", acc: float = 0.5, epoch: int = 1, flops: float = 1e8, params: float = 5e5, **kw: Any) -> dict:
    return {"status": status, "epoch": epoch, "epochs": 1, "val_accuracy": acc, "flops": flops, "params": params,
            "latency_ms": float("nan"), "images_per_second": 100.0, "device": "cpu", **kw}  # fmt: skip


def params_of(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("__")}


def test_budget_counts_distinct_schedules_and_then_finishes(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 2})
    a, b = s.suggest("a"), s.suggest("b")
    assert a["conv2a"] == 1 and a["conv3a"] == 1  # the seed (orig) first
    assert params_of(a) != params_of(b)
    assert s.suggest("c") is None  # budget in flight: wait, a trial may still fail
    s.on_trial_result("a", result("training", 0.3))
    s.on_trial_complete("a", result(acc=0.6))
    s.on_trial_complete("b", result(acc=0.4, flops=5e7))
    assert s.counted == 2
    assert s.suggest("c") == Searcher.FINISHED
    study = s._ot_study
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2 and all(len(t.values) == 3 for t in done)
    t0 = done[0]
    assert t0.user_attrs["schedule_id"] == "nin:1-1-1-1-1-1-1-1-1" and t0.user_attrs["seed"] == "orig"
    assert t0.user_attrs["val_accuracy_per_epoch"] == [0.6]  # epoch 1 of a 1-epoch run: the final report
    assert {"flops", "params", "device", "images_per_second", "git_revision", "schedule"} <= set(t0.user_attrs)
    assert study.metric_names == ["val_accuracy", "flops", "params"]


def test_duplicate_is_answered_from_the_stored_result(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 3})
    a = s.suggest("a")
    s.on_trial_complete("a", result(acc=0.7))
    study = s._ot_study
    study.enqueue_trial(params_of(a))
    study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    dups = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.DUPLICATE]
    assert len(dups) == 2
    for t in dups:
        assert t.state == TrialState.COMPLETE and t.values == study.trials[0].values
        assert t.user_attrs["duplicate_of"] == 0
    assert s.counted == 1 and s.duplicates == 2


def test_duplicate_of_a_running_trial_waits_for_its_result(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 3})
    a = s.suggest("a")
    s._ot_study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    waiting = s._ot_study.trials[1]
    assert waiting.state == TrialState.RUNNING and waiting.params == params_of(a)
    s.on_trial_complete("a", result(acc=0.7))
    waiting = s._ot_study.trials[1]
    assert waiting.state == TrialState.COMPLETE and waiting.user_attrs["outcome"] == Outcome.DUPLICATE


def test_asha_stopped_trial_is_pruned_counted_and_off_the_front(tmp_path: Path) -> None:
    stopper = EarlyStopper(max_t=3, grace_period=1, reduction_factor=2)
    s, _ = make(tmp_path, stopper=stopper, trainer={"epochs": 3}, search={"trials": 3})
    s.suggest("a"), s.suggest("b")
    s.on_trial_result("a", result("training", 0.9, epoch=1))
    stopper.stopped.add("a")  # what EarlyStopper.on_trial_result records when ASHA says STOP
    s.on_trial_complete("a", result("training", 0.9, epoch=1, flops=1.0))  # tempting partial values
    s.on_trial_complete("b", result("training", 0.2, epoch=2))  # stopped by something else
    t = s._ot_study.trials
    assert t[0].state == TrialState.PRUNED and t[0].user_attrs["outcome"] == Outcome.EARLY_STOPPED
    assert "ASHA" in t[0].user_attrs["prune_reason"] and t[0].user_attrs["partial_values"]["val_accuracy"] == 0.9
    assert t[1].state == TrialState.FAIL and t[1].user_attrs["outcome"] == Outcome.INTERRUPTED
    assert s.counted == 1  # early-stopped trials count as evaluated; interrupted ones do not
    assert s._ot_study.best_trials == []


def test_constraint_breach_is_pruned_untrained_and_off_the_front(tmp_path: Path) -> None:
    s, _ = make(tmp_path, constraints={"max_flops": 1e8}, search={"trials": 2})
    s.suggest("a"), s.suggest("b")
    s.on_trial_complete("a", result("infeasible", 0.0, epoch=0, flops=2e8, reason="flops 200,000,000 > 100,000,000"))
    s.on_trial_complete("b", result(acc=0.4, flops=5e7))
    t = s._ot_study.trials
    assert t[0].state == TrialState.PRUNED and t[0].user_attrs["outcome"] == Outcome.INFEASIBLE
    assert "constraint" in t[0].user_attrs["prune_reason"] and t[0].constraints["max_flops"] > 0
    assert "val_accuracy_per_epoch" not in t[0].user_attrs  # never trained
    assert t[1].constraints["max_flops"] < 0
    assert [b.number for b in s._ot_study.best_trials] == [1]
    assert s.counted == 1  # the breach does not count: another schedule is proposed
    assert isinstance(s.suggest("c"), dict)


def test_failed_trial_is_recorded_with_its_reason_and_retried_up_to_the_limit(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 2, "max_retries": 0})
    a = s.suggest("a")
    s.on_trial_complete("a", error=True)
    s.record_error("a", "NonFiniteLossError: training loss is nan at step 3 (epoch 1)")
    t = s._ot_study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("NonFiniteLossError")
    assert s.counted == 0
    s._ot_study.enqueue_trial(params_of(a))  # proposed again after max_retries failures: skipped
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    assert any(x.user_attrs.get("outcome") == Outcome.SKIPPED for x in s._ot_study.trials)


def test_small_space_is_exhausted_then_finished(tmp_path: Path) -> None:
    s, pspace = make(tmp_path, groups=[{"layers": "conv2a", "choices": [1, 2]}], search={"trials": 5})
    assert pspace.size == 2
    a, b = s.suggest("a"), s.suggest("b")
    assert {a["conv2a"], b["conv2a"]} == {1, 2}
    assert s.suggest("c") is None
    s.on_trial_complete("a", result())
    s.on_trial_complete("b", result())
    assert s.exhausted and s.suggest("c") == Searcher.FINISHED and s.counted == 2


def test_resume_marks_running_trials_failed_and_queues_them_again(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 3})
    a = s.suggest("a")
    b = s.suggest("b")
    s.on_trial_complete("a", result())
    del s  # the driver dies: trial b stays RUNNING
    s2, _ = make(tmp_path, search={"trials": 3})
    t = s2._ot_study.trials
    assert t[1].state == TrialState.FAIL and t[1].user_attrs["outcome"] == Outcome.INTERRUPTED
    assert s2.counted == 1
    assert params_of(s2.suggest("c")) == params_of(b)  # retried first
    retry = s2._ot_study.trials[-1]
    assert retry.user_attrs["retry_of"] == 1 and retry.state == TrialState.RUNNING


def test_abandon_closes_open_trials(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 3})
    s.suggest("a")
    assert s.abandon("Ctrl-C") == 1
    t = s._ot_study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "Ctrl-C"


def test_changed_space_is_refused_unless_fresh_which_imports_same_fidelity(tmp_path: Path) -> None:
    s, _ = make(tmp_path, search={"trials": 2})
    s.suggest("a")
    s.on_trial_complete("a", result(acc=0.8))
    with pytest.raises(SpaceError, match=r"trainer\.epochs: 1 -> 2.*--fresh"):
        make(tmp_path, trainer={"epochs": 2})
    # A new sampler is a new study, but results at the same fidelity carry over (not retrained).
    s2, _ = make(tmp_path, fresh=True, search={"trials": 2, "sampler": "tpe"})
    assert s2._ot_study.study_name == "tiny-2"
    imported = [t for t in s2._ot_study.trials if t.user_attrs.get("outcome") == Outcome.IMPORTED]
    assert len(imported) == 1 and imported[0].values[0] == 0.8
    assert s2.counted == 0
    cfg = s2.suggest("b")  # the seed (orig) is the imported schedule: answered, not trained
    assert cfg["conv2a"] != 1 or cfg["conv3a"] != 1
