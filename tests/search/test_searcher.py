"""The searcher driven by hand (no Ray), each rule checked by inspecting the study with Optuna's public API."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search import SpaceError, load_space
from search.engine import _searcher
from search.engine._build import Engine, make_engine
from search.engine._study import open_storage, plan_run, prepare_study
from search.engine.record import Outcome, StudyAttr
from tests.search.conftest import tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make(tmp_path: Path, fresh: bool = False, driver: str | None = None, stale_wait: float | None = None, **over: Any) -> Engine:
    """The engine as the driver builds it; with ``driver``, trials get Optuna heartbeats (as a driver's do)."""
    space = load_space(tiny(**over))
    url = f"sqlite:///{tmp_path}/study.db"
    plan = plan_run(space, runs_dir=tmp_path, storage=url, fresh=fresh)
    storage = open_storage(url, heartbeat=driver is not None)
    prepare_study(plan, space, storage, {"git_revision": "test"}, stale_wait=stale_wait)
    return make_engine(space, storage, plan.paths.study_name, run_dir=str(tmp_path), provenance={"git_revision": "test"},
                       driver=driver)  # fmt: skip


def result(status: str = "done", acc: float = 0.5, epoch: int = 1, **kw: Any) -> dict:
    return {"status": status, "epoch": epoch, "val_accuracy": acc, "images_per_second": 100.0, "device": "cpu", **kw}


def params_of(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("__")}


def complete_ids(study: optuna.Study) -> list[str]:
    return [t.user_attrs["schedule_id"] for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_budget_counts_full_trials_and_then_finishes(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 2})
    s, study = e.searcher, e.study
    a, b = s.suggest("a"), s.suggest("b")
    assert a["conv2a"] == 0 and a["conv3a"] == 0  # the seed (orig: index 0 of [1, 2, 4]) first
    assert params_of(a) != params_of(b)
    assert a["__costs"] == {"flops": a["__costs"]["flops"], "params": a["__costs"]["params"]}  # decided at ask time
    assert s.suggest("c") is None  # budget in flight: wait, a trial may still fail
    s.on_trial_result("a", result("training", 0.3))
    s.on_trial_complete("a", result(acc=0.6))
    s.on_trial_complete("b", result(acc=0.4))
    assert s.counted == s.evaluated == 2 and s.epochs_spent == 2
    assert s.suggest("c") == Searcher.FINISHED
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2 and all(len(t.values) == 3 for t in done)
    t0 = done[0]
    assert t0.user_attrs["schedule_id"] == "nin:1-1-1-1-1-1-1-1-1" and t0.user_attrs["seed"] == "orig"
    assert t0.values[1:] == [t0.user_attrs["flops"], t0.user_attrs["params"]]  # the exact costs, as objectives
    assert t0.user_attrs["val_accuracy_per_epoch"] == [0.6]
    assert {"flops", "params", "device", "images_per_second", "git_revision", "schedule"} <= set(t0.user_attrs)
    assert study.metric_names == ["val_accuracy", "flops", "params"]


def test_parameters_are_ordered_integers_and_the_encoding_is_recorded(tmp_path: Path) -> None:
    e = make(tmp_path)
    e.searcher.suggest("a")
    trial = e.study.trials[0]
    assert trial.distributions == {"conv2a": IntDistribution(0, 2), "conv3a": IntDistribution(0, 2)}
    assert e.study.user_attrs[StudyAttr.PARAM_ENCODING] == "index"


def test_a_duplicate_is_answered_from_the_stored_result_and_is_never_a_second_complete(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 3})
    s, study = e.searcher, e.study
    a = s.suggest("a")
    s.on_trial_complete("a", result(acc=0.7))
    study.enqueue_trial(params_of(a))
    study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    dups = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.DUPLICATE]
    assert len(dups) == 2
    assert all(t.state == TrialState.FAIL and t.user_attrs["duplicate_of"] == 0 for t in dups)
    assert s.counted == 1 and s.duplicates == 2
    ids = complete_ids(study)
    assert len(ids) == len(set(ids))


def test_a_duplicate_of_a_running_schedule_is_not_trained_twice(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 3})
    s, study = e.searcher, e.study
    a = s.suggest("a")
    study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    dup = study.trials[1]
    assert dup.state == TrialState.FAIL and dup.user_attrs["outcome"] == Outcome.DUPLICATE
    assert dup.user_attrs["duplicate_of"] == 0


def test_a_stream_of_duplicates_falls_back_to_an_unseen_schedule(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 3})
    s, study = e.searcher, e.study
    a = s.suggest("a")
    s.on_trial_complete("a", result())
    for _ in range(_searcher.DUPLICATE_STREAK):
        study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    assert any(t.user_attrs.get("enqueued") for t in study.trials)


def test_a_duplicate_proposal_is_replaced_by_its_nearest_unseen_neighbour(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 4})
    s, study = e.searcher, e.study
    a = s.suggest("a")  # orig: (0, 0)
    s.on_trial_complete("a", result())
    study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert sum(abs(b[k] - a[k]) for k in ("conv2a", "conv3a")) == 1  # one step in one ordered parameter
    assert study.trials[-1].user_attrs["enqueued"].startswith("unseen neighbour of duplicate proposal #1")


def test_seeds_are_generation_zero_observations_for_nsga2(tmp_path: Path) -> None:
    e = make(tmp_path, seeds=["orig", "root-4", "col-2"], search={"trials": 6, "sampler": "nsga2"})
    s, study = e.searcher, e.study
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert study.sampler.population_size >= 3  # at least the number of seeds
    for i in range(3):
        cfg = s.suggest(f"s{i}")
        s.on_trial_complete(f"s{i}", result(acc=0.3 + 0.1 * i))
    seeds = [t for t in study.trials if t.user_attrs.get("seed")]
    assert len(seeds) == 3 and all(t.state == TrialState.COMPLETE for t in seeds)
    assert [study.sampler.get_trial_generation(study, t) for t in seeds] == [0, 0, 0]
    assert cfg is not None


def test_results_imported_into_an_nsga2_study_answer_their_schedules(tmp_path: Path) -> None:
    first = make(tmp_path, search={"trials": 2})
    for name in ("a", "b"):
        first.searcher.suggest(name)
        first.searcher.on_trial_complete(name, result(acc=0.5))
    # a search at the same fidelity with NSGA-II imports them: finished trials Optuna 5 cannot tag with a generation
    e = make(tmp_path, name="other", search={"trials": 3, "sampler": "nsga2"})
    imported = {t.user_attrs["schedule_id"] for t in e.study.trials if t.user_attrs.get("outcome") == Outcome.IMPORTED}
    assert len(imported) == 2 and e.searcher.counted == 0
    cfg = e.searcher.suggest("c")
    assert cfg is not None
    e.searcher.on_trial_complete("c", result(acc=0.6))
    assert len(set(complete_ids(e.study))) == 3  # the new schedule is none of the imported ones


def test_an_infeasible_schedule_is_decided_at_ask_time_and_never_trained(tmp_path: Path) -> None:
    e = make(tmp_path, constraints={"max_params": 6.0e5}, search={"trials": 2})  # orig (967k) breaks it
    s, study = e.searcher, e.study
    configs = [s.suggest("a"), s.suggest("b")]
    assert all(isinstance(c, dict) for c in configs)
    orig = study.trials[0]
    assert orig.user_attrs["seed"] == "orig" and orig.state == TrialState.PRUNED
    assert orig.user_attrs["outcome"] == Outcome.INFEASIBLE and orig.constraints["max_params"] > 0
    assert "params 966,986 > 600,000" in orig.user_attrs["prune_reason"]
    assert "val_accuracy" not in orig.user_attrs and orig.values is None  # no made-up accuracy
    started = {t.number for t in study.trials if t.state == TrialState.RUNNING}
    assert len(started) == 2 and orig.number not in started  # only feasible schedules reach Tune
    for t in study.trials:
        if t.state == TrialState.RUNNING:
            assert t.constraints["max_params"] <= 0
    assert s.infeasible >= 1 and s.counted == 0


def test_a_limit_below_the_cheapest_schedule_is_refused_before_anything_runs() -> None:
    with pytest.raises(SpaceError, match=r"constraints\.max_flops.*cheapest schedule of the space \([\d,]+ flops\)"):
        load_space(tiny(constraints={"max_flops": 1000}))


def test_a_run_of_infeasible_proposals_ends_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_searcher, "INFEASIBLE_STREAK", 3)
    e = make(tmp_path, constraints={"max_params": 4.0e5}, search={"trials": 2})  # only col-4 (373k) fits
    s = e.searcher
    for i in range(3):
        e.study.enqueue_trial({"conv2a": 0, "conv3a": i})  # conv2a at 1 group: all break the limit
    assert s.suggest("a") == Searcher.FINISHED
    assert s.stop_reason is not None and "3 proposals in a row broke the constraints" in s.stop_reason


def test_a_failure_streak_with_one_reason_stops_the_search(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 10, "max_retries": 5})
    s = e.searcher
    for i in range(_searcher.FAILURE_STREAK):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", error=True)
        s.record_error(f"t{i}", f"FileNotFoundError: no CIFAR-10 at /data (attempt {i})")
    assert s.stop_reason is not None and "failed with: FileNotFoundError" in s.stop_reason
    assert s.suggest("next") == Searcher.FINISHED


def test_a_deterministic_failure_is_not_retried(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 2, "max_retries": 5})
    s, study = e.searcher, e.study
    a = s.suggest("a")
    s.on_trial_complete("a", error=True)
    s.record_error("a", "NonFiniteLossError: training loss is nan at step 3 (epoch 1)")
    t = study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("NonFiniteLossError")
    study.enqueue_trial(params_of(a))
    b = s.suggest("b")
    assert params_of(b) != params_of(a)
    assert any(x.user_attrs.get("outcome") == Outcome.SKIPPED for x in study.trials)


def test_an_early_stopped_trial_is_pruned_counts_its_epochs_and_is_off_the_front(tmp_path: Path) -> None:
    e = make(tmp_path, trainer={"epochs": 4}, search={"trials": 2, "early_stopping": "moasha", "grace_period": 1})
    s, study, sched = e.searcher, e.study, e.scheduler
    assert sched is not None and sched.rungs == [1, 3]
    s.suggest("a"), s.suggest("b")
    s.on_trial_result("a", result("training", 0.9, epoch=1))
    sched.stopped["a"] = 1  # what the scheduler records when it says STOP
    s.on_trial_complete("a", result("training", 0.9, epoch=1))
    s.on_trial_complete("b", result("training", 0.2, epoch=2))  # stopped by something else
    t = study.trials
    assert t[0].state == TrialState.PRUNED and t[0].user_attrs["outcome"] == Outcome.EARLY_STOPPED
    assert "MO-ASHA" in t[0].user_attrs["prune_reason"] and t[0].user_attrs["partial_values"]["val_accuracy"] == 0.9
    assert t[0].user_attrs["val_accuracy_per_epoch"] == [0.9] and t[0].intermediate_values == {}
    assert t[1].state == TrialState.FAIL and t[1].user_attrs["outcome"] == Outcome.INTERRUPTED
    assert s.counted == 1 and s.evaluated == 0 and s.epochs_spent == 1
    assert study.best_trials == []
    # the epoch budget (2 x 4) is not spent: more schedules are asked for
    assert isinstance(s.suggest("c"), dict)
    # a stopped schedule proposed again is a duplicate of its PRUNED trial, not retrained
    study.enqueue_trial(params_of({k: v for k, v in t[0].params.items()}))
    s.suggest("d")
    assert study.trials[-2].user_attrs["outcome"] == Outcome.DUPLICATE and study.trials[-2].user_attrs["duplicate_of"] == 0


def test_small_space_is_exhausted_then_finished(tmp_path: Path) -> None:
    e = make(tmp_path, groups=[{"layers": "conv2a", "choices": [1, 2]}], search={"trials": 5})
    s = e.searcher
    a, b = s.suggest("a"), s.suggest("b")
    assert {a["conv2a"], b["conv2a"]} == {0, 1}
    assert s.suggest("c") is None
    s.on_trial_complete("a", result())
    s.on_trial_complete("b", result())
    assert s.exhausted and s.suggest("c") == Searcher.FINISHED and s.counted == 2


def test_resume_fails_running_trials_without_heartbeats_and_queues_them_again(tmp_path: Path) -> None:
    # Trials of a driver without heartbeats (an older deeproots): Optuna cannot tell them stale.
    e = make(tmp_path, search={"trials": 3})
    e.searcher.suggest("a")
    b = e.searcher.suggest("b")
    e.searcher.on_trial_complete("a", result())
    del e  # the driver dies: trial b stays RUNNING
    e2 = make(tmp_path, search={"trials": 3})
    t = e2.study.trials
    assert t[1].state == TrialState.FAIL and t[1].user_attrs["outcome"] == Outcome.INTERRUPTED
    assert e2.searcher.counted == 1 and e2.searcher.epochs_spent == 1
    assert params_of(e2.searcher.suggest("c")) == params_of(b)  # retried first
    retry = e2.study.trials[-1]
    assert retry.user_attrs["retry_of"] == 1 and retry.state == TrialState.RUNNING


def test_abandon_closes_open_trials_and_queues_them_with_their_checkpoint(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 3})
    a = e.searcher.suggest("a")
    e.searcher.on_trial_result("a", result("training", 0.3))
    e.searcher.record_checkpoint("a", str(tmp_path / "tiny/ray/exp/trial_a/checkpoint_000000"))
    assert e.searcher.abandon("Ctrl-C") == 1
    t = e.study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "Ctrl-C"
    assert t.user_attrs["checkpoint"] == "tiny/ray/exp/trial_a/checkpoint_000000"  # relative to the run folder
    queued = e.study.trials[1]
    assert queued.state == TrialState.WAITING
    assert queued.user_attrs["retry_of"] == 0 and queued.user_attrs["checkpoint"] == t.user_attrs["checkpoint"]
    again = make(tmp_path, search={"trials": 3}).searcher.suggest("b")  # the rerun
    assert params_of(again) == params_of(a)
    assert again["__resume_from"] is None  # that folder does not exist: nothing to resume from
    folder = tmp_path / "tiny/ray/exp/trial_a/checkpoint_000000"
    folder.mkdir(parents=True)
    e3 = make(tmp_path, search={"trials": 3})
    e3.study.enqueue_trial(params_of(a), user_attrs={"checkpoint": "tiny/ray/exp/trial_a/checkpoint_000000"})
    assert e3.searcher.suggest("c")["__resume_from"] == str(folder)


def _fast_heartbeats(monkeypatch: pytest.MonkeyPatch, stale: int) -> None:
    from search.engine import _lock, _study

    monkeypatch.setattr(_lock, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(_study, "TRIAL_STALE_SECONDS", stale)


def test_a_stopped_drivers_trials_are_found_by_heartbeat_and_resume_from_their_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fast_heartbeats(monkeypatch, stale=1)
    e = make(tmp_path, driver="pid 1 on old", search={"trials": 3}, trainer={"epochs": 2})
    e.searcher.suggest("a")
    b = e.searcher.suggest("b")
    e.searcher.on_trial_result("a", result("training", 0.3))
    e.searcher.on_trial_complete("a", result(acc=0.5, epoch=2))
    e.searcher.on_trial_result("b", result("training", 0.4))
    ckpt = tmp_path / "tiny/ray/exp/trial_b/checkpoint_000000"
    ckpt.mkdir(parents=True)
    e.searcher.record_checkpoint("b", str(ckpt))
    assert e.study.trials[1].user_attrs["driver"] == "pid 1 on old"
    del e  # the driver dies: trial b stays RUNNING, its heartbeat stops
    lines: list[str] = []
    space = load_space(tiny(search={"trials": 3}, trainer={"epochs": 2}))
    url = f"sqlite:///{tmp_path}/study.db"
    storage = open_storage(url, heartbeat=True)
    info = prepare_study(plan_run(space, runs_dir=tmp_path, storage=url), space, storage, {}, say=lines.append, stale_wait=60)
    assert info == {"created": False, "recovered": 1, "retry": 1, "imported": 0, "seeds_retried": 0}
    study = optuna.load_study(study_name="tiny", storage=url)
    stale = study.trials[1]
    assert stale.state == TrialState.FAIL and "outcome" not in stale.user_attrs  # failed by Optuna's heartbeat check
    from search import TrialView

    assert TrialView(stale).outcome == Outcome.INTERRUPTED and "no heartbeat" in TrialView(stale).reason
    e2 = make_engine(space, storage, "tiny", run_dir=str(tmp_path), driver="pid 2 on new")
    c = e2.searcher.suggest("c")
    assert params_of(c) == params_of(b) and c["__resume_from"] == str(ckpt)  # queued again, with its checkpoint
    retry = e2.study.trials[-1]
    assert retry.user_attrs["retry_of"] == 1 and retry.user_attrs["driver"] == "pid 2 on new"
    assert e2.searcher.counted == 1


def test_trials_with_a_fresh_heartbeat_are_never_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fast_heartbeats(monkeypatch, stale=3600)  # nothing goes stale within this test, however slow the machine
    e = make(tmp_path, driver="pid 1 on live", search={"trials": 3})
    e.searcher.suggest("a")
    assert e.searcher.heartbeat() == 1
    with pytest.raises(SpaceError, match=r"trial\(s\) #0 of study 'tiny' still get heartbeats from pid 1 on live"):
        make(tmp_path, driver="pid 2 on other", stale_wait=0, search={"trials": 3})
    assert optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/study.db").trials[0].state == TrialState.RUNNING


def test_a_restarted_trial_keeps_the_epochs_of_its_checkpoint_once(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 1}, trainer={"epochs": 3})
    s, study = e.searcher, e.study
    s.suggest("a")
    s.on_trial_result("a", result("training", 0.1, epoch=1))
    s.on_trial_result("a", result("training", 0.2, epoch=2))
    s.record_recovery("a")  # the worker died during epoch 3; Tune restarts from the epoch-1 checkpoint
    s.on_trial_result("a", result("training", 0.25, epoch=2, history_before=[0.1]))
    s.on_trial_complete("a", result("done", 0.3, epoch=3, history_before=[0.1]))
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE and t.user_attrs["val_accuracy_per_epoch"] == [0.1, 0.25, 0.3]
    assert t.user_attrs["recoveries"] == 1 and t.user_attrs["resumed_from_epoch"] == 1 and s.epochs_spent == 3


def test_a_reported_deterministic_failure_fails_at_once_and_is_not_retried(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 2, "max_retries": 5})
    s, study = e.searcher, e.study
    a = s.suggest("a")
    s.on_trial_complete("a", {"status": "failed", "error": "deeproots.data.DataError: batch 3 is damaged"})
    t = study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["outcome"] == Outcome.FAILED
    assert t.user_attrs["fail_reason"] == "deeproots.data.DataError: batch 3 is damaged"
    study.enqueue_trial(params_of(a))
    assert params_of(s.suggest("b")) != params_of(a)
    assert study.trials[1].user_attrs["outcome"] == Outcome.SKIPPED


def test_the_searcher_pickles_without_its_study(tmp_path: Path) -> None:
    e = make(tmp_path)
    e.searcher.suggest("a")
    clone = pickle.loads(pickle.dumps(e.searcher))
    assert clone.budget == e.searcher.budget


def test_changed_space_is_refused_unless_fresh_which_imports_same_fidelity(tmp_path: Path) -> None:
    e = make(tmp_path, search={"trials": 2})
    e.searcher.suggest("a")
    e.searcher.on_trial_complete("a", result(acc=0.8))
    with pytest.raises(SpaceError, match=r"trainer\.epochs: 1 -> 2.*--fresh"):
        make(tmp_path, trainer={"epochs": 2})
    # A new sampler is a new study, but results at the same fidelity carry over (not retrained).
    e2 = make(tmp_path, fresh=True, search={"trials": 2, "sampler": "tpe"})
    assert e2.study.study_name == "tiny-2"
    imported = [t for t in e2.study.trials if t.user_attrs.get("outcome") == Outcome.IMPORTED]
    assert len(imported) == 1 and imported[0].values[0] == 0.8
    assert e2.searcher.counted == 0
    cfg = e2.searcher.suggest("b")  # the seed (orig) is the imported schedule: answered, not trained
    assert cfg["conv2a"] != 0 or cfg["conv3a"] != 0


def test_a_restart_says_whether_the_worker_died_or_the_code_raised(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from search.engine._searcher import TrialRecorder

    e = make(tmp_path, search={"trials": 3}, trainer={"epochs": 3})
    s = e.searcher
    events: list[str] = []
    s.on_event = events.append
    s.suggest("a")
    s.suggest("b")
    s.on_trial_result("a", result("training", 0.1, epoch=1))
    recorder = TrialRecorder(s)
    died = tmp_path / "died.txt"
    died.write_text("Failure # 1\nTraceback (most recent call last):\n  File x\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    raised = tmp_path / "raised.txt"
    raised.write_text("Failure # 1\nTraceback (most recent call last):\n  File x\n    raise ValueError(msg)\n"
                      "ray.exceptions.RayTaskError(OSError): ray::ImplicitFunc.train()\n  File y\nOSError: [Errno 28] No space left on device\n")  # fmt: skip
    killed = tmp_path / "killed.txt"  # what Ray 2.60 writes when the worker is SIGKILLed: no traceback
    killed.write_text("Failure # 1 (occurred at 2026-11-30_19-20-49)\nThe actor died unexpectedly before finishing this task.\n"
                      "\tclass_name: ImplicitFunc\nThe actor is dead because its worker process has died. Worker exit type: "
                      "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error code 2.\n")  # fmt: skip
    s.suggest("c")
    recorder.on_trial_recover(0, [], SimpleNamespace(trial_id="c", error_file=str(killed)))
    assert "its worker or node died during epoch 1" in events.pop()
    recorder.on_trial_recover(0, [], SimpleNamespace(trial_id="a", error_file=str(died)))
    recorder.on_trial_recover(0, [], SimpleNamespace(trial_id="b", error_file=str(raised)))
    assert "its worker or node died during epoch 2; Ray Tune restarts it from its epoch-1 checkpoint (restart 1)" in events[0]
    assert "it raised OSError: [Errno 28] No space left on device during epoch 1; Ray Tune restarts it from the start" in events[1]
