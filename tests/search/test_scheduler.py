"""The rung schedulers: ASHA (accuracy) agrees with Ray's, MO-ASHA keeps the cheap end, both rebuild from a study."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search.engine._pareto import crowding_distance, nondominated_ranks, rank_order
from search.engine._scheduler import RungScheduler, rung_epochs
from search.engine.record import Attr, Outcome

OBJ = ["val_accuracy", "flops", "params"]


def test_rung_epochs() -> None:
    assert rung_epochs(15, 3, 3) == [3, 9]
    assert rung_epochs(10, 2, 3) == [2, 6]
    assert rung_epochs(6, 1, 2) == [1, 2, 4]
    assert rung_epochs(3, 3, 3) == []


def test_nondominated_sorting_and_crowding_on_a_hand_example() -> None:
    pts = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [6, 6]], dtype=float)
    assert nondominated_ranks(pts).tolist() == [0, 0, 0, 1, 2, 3]
    cd = crowding_distance(pts[:3])
    assert np.isinf(cd[0]) and np.isinf(cd[2]) and cd[1] == pytest.approx((5 - 1) / 4 + (5 - 1) / 4)
    assert rank_order(pts).tolist() == [0, 2, 1, 3, 4, 5]


def _trial(tid: str) -> Any:
    return SimpleNamespace(trial_id=tid, config={})


def test_asha_keeps_the_top_third_of_each_rung_asynchronously() -> None:
    """A hand-computed stream: with 3 results at a rung the best continues, the worse two stop;
    with fewer than reduction_factor results every trial continues."""
    s = RungScheduler(["val_accuracy", "flops"], max_epochs=9, grace_period=1, reduction_factor=3, ranking="accuracy")
    acts = [s.on_trial_result(None, _trial(t), {"status": "training", "epoch": 1, "schedule_id": t, "val_accuracy": a, "flops": 1.0})
            for t, a in (("a", 0.5), ("b", 0.6), ("c", 0.4), ("d", 0.7), ("e", 0.55))]  # fmt: skip
    # a, b: fewer than 3 recorded -> continue; c: 3rd of 3 -> stop; d: best of 4 (keep 2) -> continue;
    # e: 3rd of 5 (keep 2) -> stop
    assert acts == ["CONTINUE", "CONTINUE", "STOP", "CONTINUE", "STOP"]
    assert s.stopped == {"c": 1, "e": 1}
    assert s.on_trial_result(None, _trial("b"), {"status": "training", "epoch": 2, "schedule_id": "b",
                                                 "val_accuracy": 0.1, "flops": 1.0}) == "CONTINUE"  # not a rung
    assert s.on_trial_result(None, _trial("b"), {"status": "done", "epoch": 9, "schedule_id": "b",
                                                 "val_accuracy": 0.1, "flops": 1.0}) == "CONTINUE"  # the end


def test_moasha_keeps_the_cheapest_schedule_that_asha_stops() -> None:
    results = [  # (schedule, accuracy at the rung, flops, params): the cheap one is least accurate
        ("big", 0.60, 220e6, 9.7e5),
        ("mid", 0.58, 120e6, 4.5e5),
        ("cheap", 0.50, 30e6, 0.7e5),
    ]
    asha = RungScheduler(OBJ, max_epochs=6, grace_period=2, reduction_factor=3, ranking="accuracy")
    moasha = RungScheduler(OBJ, max_epochs=6, grace_period=2, reduction_factor=3, ranking="pareto")
    for sid, acc, f, p in results:
        values = {"val_accuracy": acc, "flops": f, "params": p}
        last_asha, last_mo = asha.decide(sid, 2, values), moasha.decide(sid, 2, values)
    assert last_asha == "stop"  # ranked on accuracy: the cheap schedule is last
    assert last_mo == "continue"  # on the first front (cheapest), a boundary point: kept
    # A dominated schedule is stopped by MO-ASHA.
    assert moasha.decide("dominated", 2, {"val_accuracy": 0.4, "flops": 230e6, "params": 9.8e5}) == "stop"


def _finished_study(decisions: list[tuple[str, list[float], float, str]]) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for sid, accs, flops, outcome in decisions:
        attrs = {Attr.SCHEDULE_ID: sid, Attr.OUTCOME: outcome, Attr.VAL_ACCURACY_PER_EPOCH: accs, "flops": flops, "params": flops / 100}
        done = outcome == Outcome.EVALUATED
        study.add_trial(create_trial(state=TrialState.COMPLETE if done else TrialState.PRUNED,
                                     values=[accs[-1], flops, flops / 100] if done else None, user_attrs=attrs))  # fmt: skip
    return study


def test_rebuilt_rungs_take_the_same_decisions_as_an_uninterrupted_run() -> None:
    """Kill after k decisions: the rerun, rebuilt from the study, decides the rest as the first run did."""
    rng = random.Random(1)
    stream = []  # sequential trials: (schedule, per-epoch accuracies, flops)
    for i in range(14):
        base = rng.uniform(0.3, 0.6)
        stream.append((f"s{i}", [base + 0.03 * e + rng.gauss(0, 0.02) for e in range(9)], rng.uniform(2e7, 2e8)))

    def run(sched: RungScheduler, items: list) -> list[tuple[str, list[float], float, str]]:
        finished = []
        for sid, accs, flops in items:
            outcome = Outcome.EVALUATED
            for epoch in range(1, 10):
                values = {"val_accuracy": accs[epoch - 1], "flops": flops, "params": flops / 100}
                if epoch < 9 and sched.decide(sid, epoch, values) == "stop":
                    outcome = Outcome.EARLY_STOPPED
                    finished.append((sid, accs[:epoch], flops, outcome))
                    break
            else:
                finished.append((sid, accs, flops, outcome))
        return finished

    whole = RungScheduler(OBJ, max_epochs=9, grace_period=1, reduction_factor=3)
    reference = run(whole, stream)
    k = 8
    first = RungScheduler(OBJ, max_epochs=9, grace_period=1, reduction_factor=3)
    done_before_kill = run(first, stream[:k])
    rerun = RungScheduler(OBJ, max_epochs=9, grace_period=1, reduction_factor=3)
    assert rerun.rebuild(_finished_study(done_before_kill)) > 0
    after = run(rerun, stream[k:])
    assert done_before_kill + after == reference
    assert whole.decisions[-len(rerun.decisions):] == rerun.decisions
    assert any(o == Outcome.EARLY_STOPPED for *_, o in reference)  # the stream exercises stopping
