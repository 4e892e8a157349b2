"""experiments/bench_search.py: the simulated search loop, the true front, the hypervolume and the CLI.

The benchmark itself is not a test (it prints figures); its maths and its loop are.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from .conftest import EXPERIMENTS, load_script

# ---------------------------------------------------------------------------------------------
# A tiny NIN space: conv2a and conv3a in {1, 2} -- four schedules whose costs follow by hand:
#   conv2a: 5x5, 96 -> 192 at 16x16: W = 5*5*96*192 = 460,800 weights; 2 groups save W/2 weights
#           and W/2 * 256 multiply-adds.
#   conv3a: 3x3, 192 -> 192 at 8x8: W = 3*3*192*192 = 331,776; 2 groups save W/2 and W/2 * 64.
#   ungrouped NIN: 222,487,946 FLOPs, 966,986 params (deeproots' docstring).
ORIG_F, ORIG_P = 222_487_946, 966_986
COST = {  # (conv2a, conv3a) -> (FLOPs, params)
    (1, 1): (ORIG_F, ORIG_P),
    (2, 1): (ORIG_F - 230_400 * 256, ORIG_P - 230_400),
    (1, 2): (ORIG_F - 165_888 * 64, ORIG_P - 165_888),
    (2, 2): (ORIG_F - 230_400 * 256 - 165_888 * 64, ORIG_P - 230_400 - 165_888),
}
#: True final accuracies, chosen so that (2, 1) dominates (1, 2): the true front is the other three.
TRUE_ACC = {(1, 1): 0.40, (2, 1): 0.39, (1, 2): 0.36, (2, 2): 0.38}
#: What the search sees with a seed: (1, 2) looks best, so it is reported and (1, 1) is not.
NOISY_ACC = {**TRUE_ACC, (1, 2): 0.45}

TINY_YAML = """
name: tiny
model: {{arch: nin}}
groups:
  - layers: {layers}
    choices: {choices}
seeds: []
objectives: [val_accuracy, flops, params]
trainer: {{epochs: {epochs}}}
search:
  sampler: random
  trials: 4
  early_stopping: {asha}
  grace_period: 1
  reduction_factor: 3
"""


def tiny_surrogate(schedule, flops, params, epoch, max_epochs, seed):
    """Accuracy rising linearly to the table's final value; noisy values only where NOISY_ACC differs."""
    key = (schedule["conv2a"], schedule["conv3a"])
    final = TRUE_ACC[key] if seed is None else NOISY_ACC[key]
    return final * epoch / max_epochs


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_search")


def _space(tmp_path, layers=("conv2a", "conv3a"), choices=(1, 2), epochs=3, asha=False) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML.format(layers=list(layers), choices=list(choices), epochs=epochs, asha="asha" if asha else "none"))
    return str(path)


def _box_union(points: list[tuple[float, float, float]], ref: tuple[float, float, float]) -> float:
    """Hypervolume by inclusion-exclusion over the boxes [p, ref] (minimisation coordinates)."""
    total = 0.0
    for r in range(1, len(points) + 1):
        for subset in itertools.combinations(points, r):
            corner = [max(c) for c in zip(*subset)]
            total += (-1) ** (r + 1) * math.prod(max(0.0, ref[i] - corner[i]) for i in range(3))
    return total


def _hand_hv(keys: list[tuple[int, int]], acc: dict, ref_acc: float) -> float:
    ref = (-ref_acc, math.log10(1.1 * ORIG_F), math.log10(1.1 * ORIG_P))
    points = [(-acc[k], math.log10(COST[k][0]), math.log10(COST[k][1])) for k in keys]
    return _box_union(points, ref)


def _key(info, key_tuple) -> tuple[int, int]:
    by_layer = dict(zip(info.layers, key_tuple))
    return by_layer["conv2a"], by_layer["conv3a"]


# ---------------------------------------------------------------------------------------------
def test_true_front_and_hypervolume_of_the_tiny_space_are_the_hand_computed_ones(bench, tmp_path) -> None:
    info, _ = bench.make_engine(_space(tmp_path))
    table = bench._table(info)
    truth = bench.true_front(info, table, tiny_surrogate)
    assert truth.schedules == info.size == 4 and not truth.sampled
    assert sorted(_key(info, k) for k in truth.front_keys) == [(1, 1), (2, 1), (2, 2)]
    # reference accuracy: min(0.40 - 0.05, least accurate front point 0.38 - 0.01) = 0.35
    assert truth.reference == pytest.approx((0.35, 1.1 * ORIG_F, 1.1 * ORIG_P))
    assert truth.cheapest_flops == COST[(2, 2)][0]
    assert truth.hv == pytest.approx(_hand_hv([(1, 1), (2, 1), (2, 2)], TRUE_ACC, 0.35), rel=1e-9)
    # one box by hand: (1, 1) alone spans 0.05 accuracy x log10(1.1) x log10(1.1)
    assert bench.hypervolume(np.array([[0.40, ORIG_F, ORIG_P]]), truth.reference) == pytest.approx(0.05 * math.log10(1.1) ** 2)


def test_simulated_search_reproduces_the_true_front_when_it_sees_the_truth(bench, tmp_path) -> None:
    """Noise-free: the real searcher evaluates all four schedules; the reported front is the true front."""
    path = _space(tmp_path)
    info, engine = bench.make_engine(path, "random", "none", seed=0, trials=4)
    table = bench._table(info)

    def truthful(schedule, flops, params, epoch, max_epochs, seed):
        return tiny_surrogate(schedule, flops, params, epoch, max_epochs, None)

    truth = bench.true_front(info, table, truthful)
    rep = bench.simulate(engine, info, table, truthful, seed=0, trials=4, concurrency=2)
    assert sorted(_key(info, k) for k in rep.front) == [(1, 1), (2, 1), (2, 2)]
    assert (rep.epochs, rep.started, rep.completed) == (12, 4, 4)
    s = bench.score(rep, truth, info, table, truthful)
    assert s["hv_ratio"] == pytest.approx(1.0) and s["recall"] == 1.0
    assert s["cheapest_flops"] == COST[(2, 2)][0]


def test_searcher_sees_noisy_values_and_the_score_uses_the_truth(bench, tmp_path) -> None:
    """Seeded values make (1, 2) look best: it is reported, (1, 1) is not; scored at true accuracies."""
    info, engine = bench.make_engine(_space(tmp_path), "random", "none", seed=3, trials=4)
    table = bench._table(info)
    truth = bench.true_front(info, table, tiny_surrogate)
    rep = bench.simulate(engine, info, table, tiny_surrogate, seed=3, trials=4)
    reported = sorted(_key(info, k) for k in rep.front)
    assert reported == [(1, 2), (2, 1), (2, 2)]
    s = bench.score(rep, truth, info, table, tiny_surrogate)
    # (1, 2) at its true 0.36 is dominated by (2, 1): the reported front is worth {(2, 1), (2, 2)}
    expected = _hand_hv([(2, 1), (2, 2)], TRUE_ACC, 0.35) / _hand_hv([(1, 1), (2, 1), (2, 2)], TRUE_ACC, 0.35)
    assert s["hv_ratio"] == pytest.approx(expected, rel=1e-9)
    assert 0 < s["hv_ratio"] < 1
    assert s["recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("stopping", ["asha", "moasha"])
def test_equal_epoch_budget_without_and_with_early_stopping(bench, tmp_path, stopping) -> None:
    """none trains exactly `trials` schedules; early stopping trains more, stops some, never overshoots the epochs."""
    path = _space(tmp_path, layers=("conv2a", "conv3a", "conv3b"), choices=(1, 2, 4), epochs=3, asha=True)
    sur = load_script("_surrogate").default_surrogate
    info, engine = bench.make_engine(path, "random", "none", seed=1, trials=8)
    rep = bench.simulate(engine, info, bench._table(info), sur, seed=1, trials=8, concurrency=3)
    assert (rep.epochs, rep.started, rep.completed) == (24, 8, 8)
    assert rep.outcomes.get("evaluated") == 8
    info, engine = bench.make_engine(path, "random", stopping, seed=1, trials=8)
    rep = bench.simulate(engine, info, bench._table(info), sur, seed=1, trials=8, concurrency=3)
    assert rep.epochs <= 24 and rep.started > 8 and rep.completed < rep.started
    assert rep.outcomes.get("early_stopped") == rep.started - rep.completed == len(rep.stopped)


def test_loop_calls_searcher_and_scheduler_in_tunes_order(bench) -> None:
    """Through public Tune interfaces only, in the controller's order; STOP skips searcher.on_trial_result."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
    from ray.tune.search import Searcher

    calls: list[str] = []

    class RecordingSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="val_accuracy", mode="max")
            self.n = 0

        def suggest(self, trial_id):
            if self.n == 2:
                return Searcher.FINISHED
            self.n += 1
            calls.append(f"suggest {trial_id}")
            return {"g": self.n}

        def on_trial_result(self, trial_id, result):
            calls.append(f"searcher.result {trial_id} e{result['epoch']}")

        def on_trial_complete(self, trial_id, result=None, error=False):
            calls.append(f"searcher.complete {trial_id} e{result['epoch']} done={result['done']}")

    class RecordingScheduler(FIFOScheduler):
        def on_trial_add(self, controller, trial):
            calls.append(f"scheduler.add {trial.trial_id}")

        def on_trial_result(self, controller, trial, result):
            calls.append(f"scheduler.result {trial.trial_id} e{result['epoch']}")
            return TrialScheduler.STOP if trial.config["g"] == 2 else TrialScheduler.CONTINUE

        def on_trial_complete(self, controller, trial, result):
            calls.append(f"scheduler.complete {trial.trial_id}")

    info = bench.SpaceInfo(
        name="x", arch="nin", num_classes=10, input_size=(3, 32, 32), model_options={},
        layers=("conv2a",), params=(("conv2a", (1, 2), ("conv2a",)),), fixed={}, max_epochs=2,
        grace_period=1, reduction_factor=3, shipped=("random", "none"), seeds=0,
    )  # fmt: skip

    class Table:
        base_flops = 100

        def flops(self, s):
            return 100 // s["conv2a"]

        def params(self, s):
            return 10 // s["conv2a"]

    engine = bench.Engine(RecordingSearcher(), RecordingScheduler(), lambda c: {"conv2a": c["g"]}, list, dict)
    rep = bench.simulate(engine, info, Table(), lambda *a: 0.5, seed=0, trials=5, concurrency=1)
    assert calls == [
        "suggest 00000", "scheduler.add 00000",
        "scheduler.result 00000 e1", "searcher.result 00000 e1",
        "scheduler.result 00000 e2", "searcher.result 00000 e2",
        "scheduler.complete 00000", "searcher.complete 00000 e2 done=True",
        "suggest 00001", "scheduler.add 00001",
        "scheduler.result 00001 e1",  # STOP: the searcher hears of it only through on_trial_complete
        "scheduler.complete 00001", "searcher.complete 00001 e1 done=True",
    ]  # fmt: skip
    assert (rep.epochs, rep.started, rep.completed) == (3, 2, 1)
    assert rep.ended == "searcher finished (space exhausted)"


def test_same_seed_gives_the_same_table(bench, tmp_path, capsys) -> None:
    path = _space(tmp_path, layers=("conv2a", "conv3a", "conv3b"), choices=(1, 2, 4), epochs=3, asha=True)
    argv = ["--space", path, "--trials", "6", "--repeats", "2", "--configs", "nsga2/asha", "tpe/none", "--json"]

    def rows() -> list[dict]:
        assert bench.main(argv) == 0
        out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        for r in out:  # wall times differ between runs; nothing else may
            for k in [k for k in r if k.startswith("seconds") or k == "wall_seconds"]:
                r.pop(k)
        return out

    first, second = rows(), rows()
    assert first == second
    assert [(r["sampler"], r["early_stopping"]) for r in first] == [("random", "none"), ("nsga2", "asha"), ("tpe", "none")]
    reference = first[0]
    assert reference["hv_ratio_diff_vs_random_mean"] == 0.0
    needed = {"sampler", "early_stopping", "default", "hv_ratio_mean", "hv_ratio_sd", "hv_ratio_diff_vs_random_mean",
              "hv_ratio_diff_vs_random_sd", "recall_mean", "cheapest_flops_mean", "true_cheapest_flops", "epochs_mean",
              "repeats"}  # fmt: skip
    assert needed <= set(reference)
    assert all(0 <= r["hv_ratio_mean"] <= 1 + 1e-12 and r["epochs_mean"] <= 18 for r in first)
    # a different seed gives different draws
    assert bench.main([*argv, "--seed", "7"]) == 0
    other = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["hv_ratio_mean"] for r in other] != [r["hv_ratio_mean"] for r in first]


def test_hypervolume_and_nondominated_agree_with_brute_force(bench) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = np.column_stack([rng.uniform(0.3, 0.5, 5), rng.uniform(1e7, 2e8, 5), rng.uniform(1e5, 1e6, 5)])
        pts[1] = pts[0]  # a tie: both kept
        ref = (0.32, 2.2e8, 1.1e6)
        mask = bench.nondominated(pts)
        for i in range(len(pts)):
            dominated = any(
                pts[j, 0] >= pts[i, 0] and pts[j, 1] <= pts[i, 1] and pts[j, 2] <= pts[i, 2] and not np.array_equal(pts[i], pts[j])
                for j in range(len(pts))
            )
            assert mask[i] == (not dominated)
        minimised = [(-a, math.log10(f), math.log10(p)) for a, f, p in pts if a > ref[0]]
        hand = _box_union(minimised, (-ref[0], math.log10(ref[1]), math.log10(ref[2])))
        assert bench.hypervolume(pts, ref) == pytest.approx(hand, rel=1e-9, abs=1e-15)
    assert bench.hypervolume(np.empty((0, 3)), (0.3, 1e8, 1e6)) == 0.0


def test_default_surrogate_truth_noise_and_batch() -> None:
    sur = load_script("_surrogate")
    f = sur.default_surrogate
    schedule = {"conv1a": 1, "conv2a": 8, "conv3a": 2}
    truth = f(schedule, 120_000_000, 600_000, 10, 10, None)
    assert truth == f(dict(reversed(list(schedule.items()))), 120_000_000, 600_000, 10, 10, None)  # order-free
    g = np.array([[1, 8, 2]])
    assert sur.truth_many(g, list(schedule), np.array([120_000_000]), np.array([600_000]), 10, 10)[0] == truth
    draws = np.array([f(schedule, 120_000_000, 600_000, 10, 10, k) for k in range(3000)])
    assert draws[5] == f(schedule, 120_000_000, 600_000, 10, 10, 5)  # one draw per (schedule, seed, epoch)
    assert abs(draws.mean() - truth) < 0.002
    assert draws.std() == pytest.approx(sur.NOISE_SD, rel=0.08)
    assert sur.NOISE_SD == pytest.approx(0.0216, abs=1e-4)
    assert f(schedule, 120_000_000, 600_000, 9, 10, 5) != draws[5]
    curve = [f(schedule, 120_000_000, 600_000, e, 10, None) for e in range(1, 11)]
    assert curve == sorted(curve) and curve[0] > 0.1
    cheap = [f(schedule, 20_000_000, 100_000, e, 10, None) for e in (2, 10)]
    rich = [f(schedule, 200_000_000, 1_000_000, e, 10, None) for e in (2, 10)]
    assert rich[1] > cheap[1] and rich[0] / rich[1] > cheap[0] / cheap[1]  # bigger nets learn sooner
    with pytest.raises(ValueError, match="epoch must be in 1..10"):
        f(schedule, 1, 1, 11, 10, None)


def test_sensitivity_variants_change_only_what_they_say() -> None:
    sur = load_script("_surrogate")
    schedule = {"conv1a": 1, "conv2a": 8, "conv3a": 2}
    args = (schedule, 120_000_000, 600_000)
    # same truth at the last epoch
    assert sur.same_curves_surrogate(*args, 10, 10, None) == sur.noiseless_surrogate(*args, 10, 10, None) == sur.default_surrogate(*args, 10, 10, None)
    # noiseless: a seed changes nothing
    assert sur.noiseless_surrogate(*args, 4, 10, 3) == sur.default_surrogate(*args, 4, 10, None)
    # same curves: the share of the final gain reached at epoch 2 no longer depends on the FLOPs
    def share(fn, flops, params):
        s = {"conv1a": 1}
        chance = sur.CHANCE
        return (fn(s, flops, params, 2, 10, None) - chance) / (fn(s, flops, params, 10, 10, None) - chance)
    assert share(sur.same_curves_surrogate, 20_000_000, 100_000) == pytest.approx(share(sur.same_curves_surrogate, 200_000_000, 10**6))
    assert share(sur.default_surrogate, 20_000_000, 100_000) < share(sur.default_surrogate, 200_000_000, 10**6)
    g = np.array([[1, 8, 2]])
    batch = sur.same_curves_surrogate.batch(g, list(schedule), np.array([120_000_000]), np.array([600_000]), 3, 10)
    assert batch[0] == sur.same_curves_surrogate(*args, 3, 10, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --space"),
        (["--space", "spaces/nin.yaml", "--trials", "many"], "argument --trials: invalid int value: 'many'"),
        (["--space", "spaces/nin.yaml", "--configs", "nsga2"], "expected SAMPLER/EARLY_STOPPING"),
        (["--space", "spaces/nin.yaml", "--configs", "cmaes/none"], "unknown sampler 'cmaes'"),
        (["--space", "spaces/nin.yaml", "--configs", "tpe/hyperband"], "unknown early stopping 'hyperband'"),
        (["--space", "spaces/nope.yaml"], "--space spaces/nope.yaml"),
        (["--space", "spaces/nin.yaml", "--trials", "0"], "--trials must be at least 1"),
        (["--space", "spaces/nin.yaml", "--surrogate", "nosuchmodule:f"], "cannot import nosuchmodule"),
        (["--space", "spaces/nin.yaml", "--surrogate", "experiments._surrogate"], "expected MODULE:FUNCTION"),
        (["--space", "spaces/nin.yaml", "--surrogate", "experiments._surrogate:nothing"], "no callable 'nothing'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(bench, capsys, monkeypatch, argv, message) -> None:
    monkeypatch.chdir(EXPERIMENTS.parent)
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
