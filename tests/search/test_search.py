"""Whole searches on Ray (tiny NIN on synthetic 16x16 images, CPU): the study they leave behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search import Outcome, load_space, run_search
from tests.search.conftest import PYTHON, ROOT, tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(tmp_path: Path, **over: Any) -> tuple[Any, optuna.Study, list[str]]:
    lines: list[str] = []
    space = load_space(tiny(**over))
    result = run_search(space, runs_dir=tmp_path / "runs", estimate=False, export=False, print_fn=lambda x: lines.append(str(x)))
    study = optuna.load_study(study_name=result.paths.study_name, storage=result.paths.storage_url)
    return result, study, lines


def trained_trials(result: Any) -> int:
    """Tune trials that ran (one folder each), whatever their outcome."""
    return sum(1 for _ in result.paths.ray_dir.glob("*/trial_*"))


def evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get("outcome") in (Outcome.EVALUATED, Outcome.EARLY_STOPPED)]


def test_search_writes_complete_trials_with_all_objectives(ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result, study, lines = search(tmp_path, search={"trials": 3})
    assert result.evaluated == 3 and not result.interrupted
    assert result.paths.storage_url == f"sqlite:///{tmp_path}/runs/tiny/study.db"
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert len({t.user_attrs["schedule_id"] for t in complete}) == 3
    assert study.metric_names == ["val_accuracy", "flops", "params"]
    for t in complete:
        acc, flops, params = t.values
        assert 0 <= acc <= 1 and flops > 0 and params > 0
        a = t.user_attrs
        assert a["flops"] == flops and a["params"] == params and a["val_accuracy_per_epoch"][-1] == acc
        assert a["device"] == "cpu" and a["images_per_second"] > 0 and a["deeproots_version"]
        assert set(a["schedule"]) >= {"conv2a", "conv3a"} and a["schedule_id"].startswith("nin:")
        assert a["checkpoint"].startswith("ray/tiny-") and a["driver"] == f"pid {os.getpid()} on {socket.gethostname()}"
        weights = result.paths.root / a["checkpoint"] / "weights.safetensors"  # Tune's storage: runs/tiny/ray
        assert weights.is_file()  # export needs no retraining
    from safetensors.torch import load_file

    import deeproots

    t0 = complete[0]
    model = deeproots.build_model("nin", t0.user_attrs["schedule"])
    model.load_state_dict(load_file(result.paths.root / t0.user_attrs["checkpoint"] / "weights.safetensors"))
    assert result.pareto and all(r["schedule_id"] for r in result.pareto)
    assert any("optuna-dashboard sqlite:///" in line for line in lines)
    assert json.loads((result.paths.root / "run.json").read_text())["study_name"] == "tiny"
    # The same command again: nothing left to do, nothing trained.
    again, study2, lines2 = search(tmp_path, search={"trials": 3})
    assert again.evaluated == 3 and len(study2.trials) == len(study.trials)
    assert any("resuming study 'tiny'" in line for line in lines2)


def test_failing_trial_is_recorded_and_the_search_goes_on(ray_session: Any, faulty: None, tmp_path: Path) -> None:
    # conv2a with 4 groups makes nin_faulty's logits NaN: that trial raises NonFiniteLossError.
    result, study, _ = search(
        tmp_path, model={"arch": "nin_faulty"}, seeds=["nin_faulty:1-1-1-4-1-1-1-1-1", "orig"],
        search={"trials": 2, "max_retries": 0},
    )  # fmt: skip
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and failed[0].number == 0  # the first seed
    for t in failed:  # conv2a=4 schedules (raised, or proposed again: not retried), or duplicates
        outcome = t.user_attrs["outcome"]
        assert outcome == Outcome.DUPLICATE or (t.user_attrs["schedule"]["conv2a"] == 4 and outcome in (Outcome.FAILED, Outcome.SKIPPED))
    reason = failed[0].user_attrs["fail_reason"]
    assert reason.startswith("deeproots.training.NonFiniteLossError: training loss is nan at step 1"), reason
    raised = [t for t in failed if t.user_attrs["outcome"] == Outcome.FAILED]
    assert len({t.user_attrs["schedule_id"] for t in raised}) == len(raised)  # a non-finite loss is never retried
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert result.evaluated == 2 and len(complete) == 2 and all(t.user_attrs["schedule"]["conv2a"] != 4 for t in complete)


@pytest.mark.parametrize("method", ["asha", "moasha"])
def test_early_stopped_trials_end_pruned_and_spend_only_their_epochs(ray_session: Any, faulty: None, tmp_path: Path, method: str) -> None:
    # conv3a with 4 groups gives nin_faulty constant logits (chance accuracy); 1-1-1-1-1-1-4-1-1 costs
    # more FLOPs and parameters than 1-1-1-2-1-1-2-1-1, which trains first (one trial at a time, seeds
    # in order): at the first rung (3 results, the best third kept) it ranks below 1-1-1-2-1-1-2-1-1
    # on accuracy and on non-dominated sorting, so ASHA and MO-ASHA both stop it. (A cheaper
    # constant schedule, 1-1-1-2-1-1-4-1-1, is not dominated: MO-ASHA rightly keeps it.)
    # conv2a with 4 groups: a NaN loss, FAIL at once.
    result, study, lines = search(
        tmp_path, model={"arch": "nin_faulty"},
        seeds=["orig", "nin_faulty:1-1-1-2-1-1-2-1-1", "nin_faulty:1-1-1-4-1-1-4-1-1", "nin_faulty:1-1-1-1-1-1-4-1-1"],
        data={"options": {"num_train": 320}}, trainer={"epochs": 3},
        search={"trials": 3, "early_stopping": method, "grace_period": 1, "reduction_factor": 3, "sampler": "random"},
        resources={"max_concurrent": 1},
    )  # fmt: skip
    pruned = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.EARLY_STOPPED]
    assert pruned, [(t.number, t.state, t.user_attrs.get("outcome")) for t in study.trials]
    front = {t.number for t in study.best_trials}
    name = "MO-ASHA" if method == "moasha" else "ASHA"
    for t in pruned:
        assert t.state == TrialState.PRUNED and t.number not in front
        assert len(t.user_attrs["val_accuracy_per_epoch"]) == t.user_attrs["epochs_trained"] < 3
        assert f"early stopping ({name})" in t.user_attrs["prune_reason"]
    spent = sum(len(t.user_attrs["val_accuracy_per_epoch"]) for t in study.trials
                if t.user_attrs.get("outcome") in (Outcome.EVALUATED, Outcome.EARLY_STOPPED))  # fmt: skip
    assert result.epochs_spent == spent and 9 <= spent < 9 + 3  # 3 full trials' epochs, the last one may finish
    assert result.counted > result.evaluated  # stopping bought more schedules for the same epochs
    assert any("stopped early" in line for line in lines)


def test_a_ctrl_c_between_two_trials_stops_the_search(ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Tune catches a Ctrl-C itself and returns normally; one that lands just after the only running
    trial was recorded leaves no trial open. The search must still call itself stopped (exit 130,
    "rerun to resume"), not done with its budget unspent."""
    from search.engine._searcher import ScheduleSearch
    from tests.search.faulty import done_at_once

    recorded = ScheduleSearch.on_trial_complete
    sent: list[int] = []

    def then_ctrl_c(self: ScheduleSearch, *args: Any, **kwargs: Any) -> None:
        recorded(self, *args, **kwargs)
        if not sent:  # once: Tune's handler, installed while it runs, only sets its stop flag
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ScheduleSearch, "on_trial_complete", then_ctrl_c)
    lines: list[str] = []
    space = load_space(tiny(search={"trials": 3}, resources={"max_concurrent": 1}))
    result = run_search(space, runs_dir=tmp_path / "runs", estimate=False, export=False,
                        print_fn=lambda x: lines.append(str(x)), trial_fn=done_at_once)  # fmt: skip
    assert result.interrupted, "\n".join(lines)
    assert any("rerun the same command to resume" in line for line in lines)
    study = optuna.load_study(study_name="tiny", storage=result.paths.storage_url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1  # the budget was not spent


def test_seeds_that_failed_with_a_curable_error_are_trained_on_the_rerun(ray_session: Any, tmp_path: Path) -> None:
    """Every trial of the first run fails as a broken environment does; the search stops on its failure
    streak. Once the environment is fixed, the rerun trains the seeds (queued once, when the study was
    made) instead of spending the budget on other schedules."""
    from tests.search.faulty import done_at_once, worker_setup_fails

    seeds = ["orig", "nin:1-1-1-2-1-1-1-1-1", "nin:1-1-1-1-1-1-2-1-1", "nin:1-1-1-2-1-1-2-1-1"]
    space = load_space(tiny(seeds=seeds, search={"trials": 4}, resources={"max_concurrent": 1}))
    runs = tmp_path / "runs"
    first = run_search(space, runs_dir=runs, estimate=False, export=False, print_fn=lambda _: None, trial_fn=worker_setup_fails)
    assert first.stop_reason and "ModuleNotFoundError" in first.stop_reason
    lines: list[str] = []
    second = run_search(space, runs_dir=runs, estimate=False, export=False, print_fn=lambda x: lines.append(str(x)),
                        trial_fn=done_at_once)  # fmt: skip
    assert not second.stop_reason and not second.interrupted
    study = optuna.load_study(study_name="tiny", storage=second.paths.storage_url)
    trained = {t.user_attrs["schedule_id"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert trained == {"nin:1-1-1-1-1-1-1-1-1", *seeds[1:]}, trained  # the seeds, not random schedules
    assert any("seed(s) whose trials failed with an error a retry may cure queued again" in line for line in lines)


def test_duplicates_are_not_retrained_and_a_small_space_stops_early(ray_session: Any, tmp_path: Path) -> None:
    result, study, lines = search(
        tmp_path, groups=[{"layers": "conv2a", "choices": [1, 2]}], search={"trials": 5, "seed": 3},
        resources={"max_concurrent": 1}, objectives=["val_accuracy", "flops", "latency_ms"],
        latency={"threads": 1},
    )  # fmt: skip
    assert result.exhausted and result.evaluated == 2
    assert any("holds only 2 distinct schedules" in line for line in lines)
    assert trained_trials(result) == 2  # each schedule trained once
    dups = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.DUPLICATE]
    for t in dups:  # answered from the stored result: never a second COMPLETE trial (tests/search/test_searcher.py forces them)
        original = study.trials[t.user_attrs["duplicate_of"]]
        assert t.state == TrialState.FAIL and t.params == original.params and original.state == TrialState.COMPLETE
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    for t in study.get_trials(states=(TrialState.COMPLETE,)):  # latency measured once per schedule
        assert t.values[2] == t.user_attrs["latency_ms"] > 0
    assert len(json.loads((result.paths.root / "latency.json").read_text())) == 2


def test_constraint_keeps_a_schedule_off_the_front(ray_session: Any, tmp_path: Path) -> None:
    # orig NIN at 16x16 costs ~55.6M FLOPs; every grouped schedule of the space costs less.
    result, study, _ = search(tmp_path, constraints={"max_flops": 5.0e7}, search={"trials": 2})
    orig = study.trials[0]
    assert orig.user_attrs["seed"] == "orig" and orig.state == TrialState.PRUNED
    assert orig.user_attrs["outcome"] == Outcome.INFEASIBLE and "flops" in orig.user_attrs["prune_reason"]
    assert "checkpoint" not in orig.user_attrs and "val_accuracy_per_epoch" not in orig.user_attrs  # not trained
    assert orig.number not in {t.number for t in study.best_trials}
    assert result.evaluated == 2  # the breach did not count
    assert all(t.constraints["max_flops"] <= 0 for t in study.best_trials)


# ------------------------------------------------------------------------------ driver killed


def _write_space(tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(tiny(**over)))
    return path


@pytest.mark.slow
def test_search_on_a_two_node_ray_cluster(tmp_path: Path) -> None:
    """Trials run on a node other than the driver's, joined with ``--address``.

    The head (where the driver runs) offers no CPU, so every trial must be placed on the second
    node: which node takes a trial does not depend on timing or machine load.
    """
    space = _write_space(tmp_path, search={"trials": 3})
    script = f"""
import json, sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 0, "include_dashboard": False}})
worker = cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
from search.run import main
code = main([{str(space)!r}, "--runs-dir", "runs", "--no-estimate", "--no-export", "--address", cluster.address])
print(json.dumps({{"head": cluster.head_node.node_id, "worker": worker.node_id}}))
cluster.shutdown()
sys.exit(code)
"""
    proc = subprocess.run([PYTHON, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"head"')))
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/runs/tiny/study.db")
    done = evaluated(study)
    assert len(done) == 3
    assert {t.user_attrs["node_id"] for t in done} == {nodes["worker"]}  # every trial crossed to the other node
    assert nodes["worker"] != nodes["head"]
