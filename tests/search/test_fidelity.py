"""python -m search.fidelity: the rank-reliability check -- sampling, verdict, stored results, the CLI.

The whole check runs on the tiny synthetic NIN space (training through the search on Ray); its
results land in the run's storage, where a later search at the same fidelity imports them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest

from search import Outcome, load_space, run_search
from search.engine._trial_storage import resolve_checkpoint_uri
from search.engine.record import TrialFiles
from search.engine.noise import RankAgreement
from search.runner._fidelity import RANKS, check_fidelity, fidelity_study, sample_schedules, stored_results, verdict
from tests.search.conftest import PYTHON, ROOT, tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_sample_is_the_paper_seeds_then_distinct_random_schedules() -> None:
    space = load_space(tiny(seeds=["orig", "root-4"]), check_data=False)  # 9 schedules
    sample = sample_schedules(space, 4, seed=3)
    assert [name for _, name, _ in sample] == ["orig", "root-4", None, None, None, None]
    ids = [sid for sid, _, _ in sample]
    assert len(set(ids)) == 6 and ids == [sid for sid, _, _ in sample_schedules(space, 4, seed=3)]
    assert ids != [sid for sid, _, _ in sample_schedules(space, 4, seed=4)]
    everything = sample_schedules(space, 100)  # more than the space holds: all of it, once
    assert len({sid for sid, _, _ in everything}) == len(everything) == 9


def _agreement(tau: float, low: float, high: float) -> RankAgreement:
    return RankAgreement(tau, 0.01, low, high, 0.95, 16, 2000)


def test_verdict_sentences() -> None:
    cannot = verdict("nin", _agreement(0.27, -0.05, 0.55))
    assert cannot.startswith("this fidelity cannot rank the schedules of nin: two training seeds order them alike no better than chance")
    assert "interval -0.05 to 0.55" in cannot and cannot.endswith(".")
    can = verdict("nin", _agreement(0.8, RANKS, 0.95))
    assert can.startswith("this fidelity can rank the schedules of nin")
    coarse = verdict("nin", _agreement(0.5, 0.2, 0.75), se_points=1.5)
    assert "only coarsely" in coarse and "differences under ~4.2 points are noise" in coarse  # 2 x sqrt(2) x 1.5
    both = verdict("nin", _agreement(0.8, 0.6, 0.9), _agreement(0.1, -0.3, 0.5), "trainer.epochs=10")
    assert "its order is not shown to agree with the order at trainer.epochs=10 (τ 0.10" in both
    assert "its order agrees with" in verdict("nin", _agreement(0.8, 0.6, 0.9), _agreement(0.6, 0.2, 0.8), "data.subset=9000")


def test_a_measurement_whose_trials_all_fail_ends_the_check_in_one_error(ray_session: Any, tmp_path: Path) -> None:
    """Every trial failing stops the measurement's search (its failure streak): the check says so in one
    FidelityError naming the cause, and trains no second measurement; the CLI prints it as one line."""
    from search.runner._fidelity import FidelityError
    from tests.search.faulty import fails_at_once

    lines: list[str] = []
    with pytest.raises(FidelityError, match=r"^seed 0: the search that trains this measurement stopped: .*training loss is nan \(test\).*rerun the same command"):
        check_fidelity(load_space(tiny()), schedules=4, seeds=2, runs_dir=tmp_path / "runs", estimate=False,
                       print_fn=lambda x: lines.append(str(x)), trial_fn=fails_at_once)  # fmt: skip
    assert not any(line.startswith("  seed 1:") for line in lines)  # the second measurement never started


def test_check_stores_its_results_and_a_later_search_imports_them(ray_session: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    space = load_space(tiny())  # 9 schedules; seed orig; trainer.seed 0
    lines: list[str] = []
    report = check_fidelity(space, schedules=2, seeds=2, against=["data.subset=64"], runs_dir=runs, estimate=False,
                            print_fn=lambda x: lines.append(str(x)))  # fmt: skip
    ids = [sid for sid, _ in report.schedules]
    assert len(ids) == 3 and report.schedules[0][1] == "orig"
    assert report.trained == 9  # 3 schedules x (seed 0, seed 1, data.subset=64)
    assert [m.label for m in report.measurements] == ["seed 0", "seed 1", "data.subset=64"]
    for m in report.measurements:
        assert set(m.accuracy) == set(ids) and all(0 <= v <= 1 for v in m.accuracy.values())
        assert m.val_images == 64
    assert report.compared == ids and report.seed_tau.schedules == 3 and report.against_tau is not None
    assert report.se == pytest.approx((lambda p: (p * (1 - p) / 64) ** 0.5)(
        sum(v for m in report.seeds for v in m.accuracy.values()) / 6))  # fmt: skip
    assert lines[-1] == f"verdict: {report.verdict}" and report.verdict.startswith("this fidelity ")
    assert any(line.startswith("Kendall τ seed 0 vs seed 1: ") for line in lines)
    assert not (runs / "tiny" / "run.json").exists()  # the run's own study is not decided by the check

    # The same check again: everything is stored, nothing is trained.
    again = check_fidelity(space, schedules=2, seeds=2, runs_dir=runs, estimate=False, print_fn=lambda x: None)
    assert again.trained == 0 and [m.accuracy for m in again.seeds] == [m.accuracy for m in report.seeds]

    # A search at the same fidelity (training seed 0) imports the seed-0 results -- never seed 1's.
    seed0 = report.seeds[0]
    assert seed0.study == fidelity_study(space)
    result = run_search(load_space(tiny(search={"trials": 1, "sampler": "random", "seed": 0})), runs_dir=runs,
                        estimate=False, export=False, print_fn=lambda x: None)  # fmt: skip
    study = optuna.load_study(study_name="tiny", storage=result.paths.storage_url)
    imported = {t.user_attrs["schedule_id"]: t for t in study.trials if t.user_attrs.get("outcome") == Outcome.IMPORTED}
    assert set(imported) == set(ids)
    assert {sid: t.values[0] for sid, t in imported.items()} == seed0.accuracy
    assert all(t.user_attrs["imported_from"].startswith(seed0.study + "#") for t in imported.values())
    trained = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.EVALUATED]
    assert len(trained) == 1 and trained[0].user_attrs["schedule_id"] not in ids  # the seed orig was not retrained
    acc = trained[0].values[0]
    assert trained[0].user_attrs["val_accuracy_se"] == pytest.approx((acc * (1 - acc) / 64) ** 0.5)  # recorded per trial
    assert json.loads((runs / "tiny" / "run.json").read_text())["study_name"] == "tiny"
    # ... and the final weights of an imported result are found in its recorded Tune checkpoint
    for t in imported.values():
        folder = resolve_checkpoint_uri(t.user_attrs["checkpoint"], [result.paths.root])
        assert folder is not None and (Path(folder) / TrialFiles.WEIGHTS).is_file()
    assert stored_results(result.paths.storage_url, space.fidelity_key()) == {
        **seed0.accuracy, trained[0].user_attrs["schedule_id"]: trained[0].values[0]}  # fmt: skip


def test_a_fidelity_study_made_with_another_sample_gets_a_numbered_sibling(tmp_path: Path) -> None:
    from search.engine._study import plan_run

    space = load_space(tiny())
    name = fidelity_study(space)
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize", "minimize"])
    other = load_space(tiny(seeds=["root-4"]))  # another sample: another identity, the same fidelity
    other.study_meta("tiny", {}).write(study)
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0, 1.0]))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "run.json").write_text(json.dumps({"storage": url, "study_name": "tiny"}))
    plan = plan_run(space, runs_dir=tmp_path, storage=url, fresh=True, study=name)
    assert (plan.mode, plan.paths.study_name) == ("fresh", f"{name}-2")
    assert plan_run(space, runs_dir=tmp_path, storage=url).paths.study_name == "tiny"  # the run's own: from run.json


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "search.fidelity", *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedules", "0"], "error: --schedules: must be at least 1, got 0"),
        (["--seeds", "1"], "error: --seeds: needs at least 2 training seeds to compare, got 1"),
        (["--against", "trainer.epochs"], "error: --against: expected key.path=value, got 'trainer.epochs'"),
        (["--against", "search.trials=5"], "error: --against: search.trials=5 changes nothing a result depends on"),
        (["--against", "trainer.epochz=5"], "error: --against trainer.epochz: unknown key"),
        (["--set", "search.sampler=annealing"], "error: search.sampler: Input should be"),
        (["--schedules", "many"], "error: argument --schedules: invalid int value: 'many'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_trains_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(json.dumps(tiny()))
    proc = _cli([str(space), "--no-estimate", *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "runs" / "tiny" / "ray").exists()  # no trial started
