"""The confirmation stage: the confirm block, resume after kill -9, the export of a (un)confirmed front."""

from __future__ import annotations

import csv
import math
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from search import load_space
from search.engine._confirm import ConfirmedSchedule, confirmed_front
from search.space._load import read_space
from search.space._schema import SpaceError
from tests.search.conftest import PYTHON, ROOT, tiny

# ------------------------------------------------------------------------------------ the block


def test_confirm_overrides_take_only_data_and_trainer_keys() -> None:
    with pytest.raises(SpaceError) as e:
        read_space(tiny(confirm={"seeds": 2, "overrides": {"search.trials": 3}}))
    assert e.value.key == "confirm.overrides" and "not a data.* or trainer.* key" in str(e.value)
    assert "\n" not in str(e.value)


def test_confirm_override_the_space_refuses_is_named_like_set() -> None:
    from search.runner._confirm import confirm_spaces

    space = load_space(tiny(confirm={"seeds": 2, "overrides": {"trainer.epoch": 3}}), check_data=False)
    with pytest.raises(SpaceError) as e:
        confirm_spaces(space, check_data=False)
    assert e.value.key == "confirm.overrides.trainer.epoch" and "unknown key" in str(e.value)


def test_confirm_block_is_outside_the_search_identity_and_seeds_are_fresh() -> None:
    from search.runner._confirm import confirm_spaces

    plain = load_space(tiny(), check_data=False)
    confirmed = load_space(tiny(confirm={"seeds": 3, "max_schedules": 2, "overrides": {"trainer.epochs": 4}}), check_data=False)
    assert plain.identity() == confirmed.identity() and plain.fidelity_key() == confirmed.fidelity_key()
    seeds = confirm_spaces(confirmed, check_data=False)
    assert [s.train.seed for s in seeds] == [1, 2, 3]  # never the search's own training seed (0)
    assert all(s.train.epochs == 4 for s in seeds)
    assert len({s.fidelity_key() for s in seeds} | {plain.fidelity_key()}) == 4  # one fidelity per seed


def test_confirmed_front_is_non_dominated_on_mean_accuracy_and_costs() -> None:
    def s(sid: str, accs: list[float], flops: float) -> ConfirmedSchedule:
        return ConfirmedSchedule(sid, None, 0.5, {"flops": flops}, dict(enumerate(accs)))

    rows = [s("big", [0.60, 0.62], 200), s("small", [0.50, 0.54], 100), s("worse", [0.49, 0.50], 150)]
    assert confirmed_front(rows) == ["big", "small"]
    assert rows[0].mean == pytest.approx(0.61) and rows[0].sd == pytest.approx(math.sqrt(2) * 0.01)


def test_a_training_left_running_is_closed_and_its_checkpoint_is_where_a_rerun_resumes() -> None:
    import warnings

    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    from search.engine._confirm import (Candidate, close_abandoned, confirmed_trials, finish_confirmed, open_confirm_study,
                                        resume_points, start_confirmed)  # fmt: skip
    from search.engine.record import Attr

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    search = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.set_metric_names(["val_accuracy", "flops"])
    cand = Candidate("nin:2", None, 0, {"g": 2}, {"g": CategoricalDistribution([1, 2])}, {"val_accuracy": 0.5, "flops": 10.0}, True)
    companion = open_confirm_study(storage, search, {})
    running = start_confirmed(companion, cand, seed=1, fidelity_key="k1")
    running.set_user_attr(Attr.CHECKPOINT, "ray/x/trial_a/checkpoint_000001")  # as the driver records it
    # the driver died: the next one closes it and resumes from its checkpoint
    assert close_abandoned(storage, companion, "its driver stopped") == 1
    [closed] = companion.get_trials()
    assert closed.state == TrialState.FAIL and closed.params == {"g": 2}
    assert closed.user_attrs[Attr.OUTCOME] == "interrupted" and closed.user_attrs[Attr.FAIL_REASON] == "its driver stopped"
    assert resume_points(companion) == {("nin:2", "k1"): "ray/x/trial_a/checkpoint_000001"}
    again = start_confirmed(companion, cand, seed=1, fidelity_key="k1")
    finish_confirmed(companion, again, cand, accuracy=0.625, attrs={Attr.CHECKPOINT: "ray/x/trial_b/checkpoint_000002"})
    done = confirmed_trials(companion)[("nin:2", "k1")]
    assert done.values == [0.625, 10.0] and done.params == {"g": 2} and done.user_attrs[Attr.TRAINING_SEED] == 1
    assert close_abandoned(storage, companion, "its driver stopped") == 0


# ------------------------------------------------------------------------------------ kill -9


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _confirmed(db: Path, study: str) -> list[tuple[str, str]]:
    """(schedule id, fidelity key) of every COMPLETE trial of ``study``, read with plain SQLite."""
    try:
        with sqlite3.connect(db, timeout=30) as con:
            rows = con.execute(
                "select a1.value_json, a2.value_json from trials t join studies s on t.study_id = s.study_id "
                "join trial_user_attributes a1 on a1.trial_id = t.trial_id and a1.key = 'schedule_id' "
                "join trial_user_attributes a2 on a2.trial_id = t.trial_id and a2.key = 'fidelity_key' "
                "where s.study_name = ? and t.state = 'COMPLETE'", (study,)).fetchall()  # fmt: skip
    except sqlite3.OperationalError:
        return []
    return [(yaml.safe_load(a), yaml.safe_load(b)) for a, b in rows]


def test_confirmation_resume_after_kill_9_trains_nothing_twice(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny(data={"options": {"num_train": 320}}, search={"trials": 3},
                                         resources={"max_concurrent": 1})))  # fmt: skip
    search = subprocess.run([PYTHON, "-m", "search.run", str(space), "--no-estimate", "--no-export"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900, env=_env())  # fmt: skip
    assert search.returncode == 0, search.stdout + search.stderr
    cmd = [PYTHON, "-m", "search.confirm", "runs/tiny", "--set", "confirm.seeds=2", "--set", "confirm.max_schedules=2",
           "--set", "confirm.overrides.trainer.epochs=3", "--no-export"]  # fmt: skip
    db = tmp_path / "runs/tiny/study.db"
    log = tmp_path / "first.log"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None and not _confirmed(db, "tiny-confirm"):
            time.sleep(0.2)
        assert _confirmed(db, "tiny-confirm"), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what the driver started that outlived it (Ray's agents)
        except ProcessLookupError:
            pass
    before = _confirmed(db, "tiny-confirm")
    second = subprocess.run(cmd[:4] + ["--no-export"], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=_env())
    assert second.returncode == 0, second.stdout + second.stderr
    # the rerun ran with the block the killed run had (no --set), and only what was missing
    assert f"{4 - len(before)} training(s) to run, {len(before)} recorded already" in second.stdout, second.stdout
    after = _confirmed(db, "tiny-confirm")
    assert len(after) == 4 and len(set(after)) == 4, after  # 2 schedules x 2 seeds, none recorded twice
    assert set(before) <= set(after)
    assert "Kendall τ search fidelity vs confirmation" in second.stdout
    third = subprocess.run(cmd[:4], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=_env())
    assert third.returncode == 0 and "0 training(s) to run, 4 recorded already" in third.stdout, third.stdout + third.stderr
    with open(tmp_path / "runs/tiny/export/pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["confirmed"] == "yes" and r["seeds"] == "2" for r in rows)
    for r in rows:
        per_seed = [float(x.split(":")[1]) for x in r["val_accuracy_per_seed"].split(";")]
        assert float(r["val_accuracy"]) == pytest.approx(sum(per_seed) / 2, abs=1e-4)  # per seed: 4 decimals
        assert len(r["test_accuracy_per_seed"].split(";")) == 2 and r["test_accuracy_sd"] != ""
        assert r["flops_fraction_of_orig"] != "" and float(r["search_val_accuracy"]) > 0
    report = (tmp_path / "runs/tiny/export/report.md").read_text()
    assert "This front is confirmed" in report and "tied band" in report and "unconfirmed" not in report


# ------------------------------------------------------------------------------------ export


def test_export_without_a_confirmation_says_unconfirmed(template_run: Path, tmp_path: Path) -> None:
    from search.export import export_run
    from search.outputs._confirmed import UNCONFIRMED
    from tests.search.export_support import clone_run

    run = clone_run(template_run, tmp_path / "runs" / "exp")
    said: list[str] = []
    export_run(run, test=False, dashboard=False, print_fn=lambda x: said.append(str(x)))
    assert sum("unconfirmed" in line for line in said) == 1
    report = (run / "export/report.md").read_text()
    assert UNCONFIRMED in report and report.count("unconfirmed") == 1
    with open(run / "export/pareto.csv") as f:
        assert all(r["confirmed"] == "no" and r["val_accuracy_sd"] == "" for r in csv.DictReader(f))


@pytest.mark.parametrize("case", ["not-a-confirm-key", "no-run", "no-seeds"])
def test_confirm_cli_bad_input_is_one_line_exit_2_nothing_written(
    case: str, template_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.confirm import main
    from tests.search.export_support import clone_run

    run = clone_run(template_run, tmp_path / "runs" / "exp")
    before = _files(run)
    args = {
        "not-a-confirm-key": ([str(run), "--set", "search.trials=3"], "--set search.trials: python -m search.confirm takes confirm.*"),
        "no-run": ([str(tmp_path / "nowhere")], "no such run folder"),
        "no-seeds": ([str(run)], "confirm.seeds: is 0: nothing to confirm"),
    }[case]
    assert main(args[0]) == 2
    err = capsys.readouterr().err
    assert args[1] in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert _files(run) == before
    with sqlite3.connect(run / "study.db") as con:  # no driver lock taken, no companion study made
        tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        studies = {r[0] for r in con.execute("select study_name from studies")}
    assert "deeproots_driver_lock" not in tables and studies == {"exp"}


def _files(run: Path) -> list[Path]:
    """The run folder's files, less SQLite's own -wal/-shm (there while any connection is open)."""
    return sorted(p.relative_to(run) for p in run.rglob("*") if not p.name.endswith(("-wal", "-shm")))


# ------------------------------------------------------------------------------------ storage and lock


def _plant_unfinished(run: Path, accuracy: float) -> tuple[Any, str]:
    """For every schedule of the run's search: a FAIL training in ``<study>-confirm`` (seed 1, no
    overrides) whose recorded checkpoint -- relative to the run folder, in its Tune storage -- is
    final, as when a driver died after the trial finished and before it recorded the result."""
    import optuna
    from optuna.trial import TrialState

    import deeproots
    from search.confirm import _load_run
    from search.engine._confirm import open_confirm_study
    from search.engine._study import open_storage
    from search.engine.record import Attr, TrialView
    from search.runner._confirm import confirm_spaces
    from search.runner._trial import write_final_checkpoint

    space, (url, name, _) = _load_run(run, None, [(["confirm", "seeds"], 1), (["confirm", "max_schedules"], 1)])
    key = confirm_spaces(space, check_data=False)[0].fidelity_key()
    storage = open_storage(url)
    search = optuna.load_study(study_name=name, storage=storage)
    companion = open_confirm_study(storage, search, {})
    for t in search.get_trials(states=(TrialState.COMPLETE,)):
        sid = TrialView(t).schedule_id
        folder = run / "ray" / "planted" / f"trial_{t.number}"
        model = deeproots.build_model(space.arch, sid, num_classes=space.num_classes, **space.spec.model.options)
        write_final_checkpoint(folder, model, {"schedule_id": sid, "epochs": space.train.epochs, "status": "done",
                                               "history": [accuracy], "val_accuracy": accuracy}, {"schedule_id": sid})  # fmt: skip
        companion.add_trial(optuna.trial.create_trial(
            state=TrialState.FAIL, params=t.params, distributions=t.distributions,
            user_attrs={Attr.SCHEDULE_ID: sid, Attr.FIDELITY_KEY: key, Attr.CHECKPOINT: f"ray/planted/trial_{t.number}"},
        ))  # fmt: skip
    return space, url


def test_confirmation_resumes_from_the_checkpoint_its_study_recorded(run: Path, ray_session: Any) -> None:
    import optuna
    from optuna.trial import TrialState

    from search.engine.record import Attr, TrialView
    from search.runner._confirm import locked_confirm

    space, url = _plant_unfinished(run, accuracy=0.4375)
    said: list[str] = []
    result = locked_confirm(space, run, url, "exp", print_fn=lambda x: said.append(str(x)))
    assert not result.interrupted, said
    assert (result.trained, result.recorded) == (0, 1), said  # its final checkpoint answered it: nothing trained
    assert any("1 training(s) to run, 0 recorded already; 1 resume(s)" in line for line in said), said
    companion = optuna.load_study(study_name="exp-confirm", storage=url)
    [done] = companion.get_trials(states=(TrialState.COMPLETE,))
    view = TrialView(done)
    assert view.val_accuracy == 0.4375 and done.user_attrs[Attr.RECOVERED] is True
    # the result's checkpoint is the one Tune persisted in the run's Tune storage, recorded relative to the run
    assert view.checkpoint and not view.checkpoint.startswith("ray/planted") and (run / view.checkpoint / "weights.safetensors").is_file()
    # the tie test's per-image results: cached by the driver in the run folder, nothing beside any weights
    assert list((run / "val-correct").glob("exp-*.bits")) and not list(run.rglob("*.val-correct"))
    # a rerun trains nothing and reads the cache
    again = locked_confirm(space, run, url, "exp", print_fn=lambda x: None)
    assert (again.trained, again.recorded) == (0, 0) and [s.schedule_id for s in again.confirmation.schedules] == [view.schedule_id]


def test_confirm_cli_refuses_a_study_another_driver_holds(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search.confirm import main
    from search.engine._lock import StudyLock
    from search.outputs._locate import locate_run

    lock = StudyLock.acquire(locate_run(run).storage_url, "exp")  # this process: a live driver of the study
    try:
        assert main([str(run), "--set", "confirm.seeds=1", "--no-export"]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert "is being searched by another driver" in err and err.count("\n") == 1, err
    assert not (run / "val-correct").exists()  # nothing scored, nothing trained, no companion study
    with sqlite3.connect(run / "study.db") as con:
        assert {r[0] for r in con.execute("select study_name from studies")} == {"exp"}
