"""Faults a search on a cluster survives, each provoked at a known point -- never by timing:

* the Ray worker running a trial is killed mid-epoch -> Tune restarts the trial from its last
  checkpoint, while a deterministic error (a non-finite loss, a damaged image) fails its trial at once;
* the driver is SIGKILLed, or stopped with Ctrl-C, while a trial is held mid-epoch -> the rerun keeps
  what finished and resumes the held trial from its checkpoint (Ctrl-C exits 130, nothing left RUNNING);
* the node running a trial is removed from a two-node ``ray.cluster_utils.Cluster`` -> the trial
  finishes on the other node, from its last checkpoint;
* trials keep their files in a real S3 server; the driver is killed while a worker is uploading a
  checkpoint -> the rerun resumes from the last complete one, finishes, exports with test accuracy,
  and nothing lands under the local ``runs/<name>/ray``;
* a real PostgreSQL study: a second driver is refused in one line; the first is killed and resumed;
  the export and optuna-dashboard read the study.

Every test asserts that nothing finished is lost and that nothing trains twice. The worker that must
be mid-epoch is held there by ``nin_faulty``'s stall (:mod:`tests.search.faulty`), the upload by the
S3 server's gate (:mod:`tests.object_store`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search import Outcome, TrialView
from search.runner._trial import SCRATCH_PREFIX
from tests.search.conftest import PYTHON, ROOT, tiny
from tests.search.faulty import DAMAGED_ENV, STALL_ENV, stalled

optuna.logging.set_verbosity(optuna.logging.WARNING)

pytestmark = pytest.mark.slow

#: conv3a = 2 stalls in epoch 2 (when STALL_ENV is set); conv2a = 4 makes the loss NaN; conv2a = 2 with
#: conv3a = 1 meets a damaged image (when DAMAGED_ENV is set).
STALL = "nin_faulty:1-1-1-1-1-1-2-1-1"
NAN = "nin_faulty:1-1-1-4-1-1-1-1-1"
DAMAGED = "nin_faulty:1-1-1-2-1-1-1-1-1"


def _space(tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(tiny(**over)))
    return path


def _driver_script(argv: list[str], stall: Path, cluster: str = "", damaged: bool = False) -> str:
    """A driver that registers ``nin_faulty`` (here and in every worker) and runs ``python -m search.run argv``."""
    env = {"PYTHONPATH": str(ROOT), STALL_ENV: str(stall), **({DAMAGED_ENV: "1"} if damaged else {})}
    start = cluster or (
        "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='ERROR', "
        f"runtime_env={{'worker_process_setup_hook': 'tests.search.faulty.register', 'env_vars': {env!r}}})"
    )
    return f"""
import os, sys
os.environ.update({env!r})
import ray
from tests.search.faulty import register
register()
{start}
from search.run import main
code = main({argv!r})
sys.exit(code)
"""


def _start(script: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([PYTHON, "-c", script], cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=full,
                            start_new_session=True)  # fmt: skip


def _reap(proc: subprocess.Popen) -> None:
    """Kill what a driver started that outlived it (Ray's processes), by its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait(condition: Any, proc: subprocess.Popen, log: Path, what: str, seconds: float = 600) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, f"the driver ended before {what}:\n{log.read_text()[-4000:]}"
        assert time.time() < deadline, f"no {what} within {seconds:.0f} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def _checkpoint_recorded(url: str, complete: int = 0) -> bool:
    """Whether the driver recorded a checkpoint of a RUNNING trial in study ``tiny`` (and ``complete``
    trials are COMPLETE) -- then Tune has registered it, and a restart or a rerun starts from it.
    Called once the study exists (never races the driver creating it)."""
    study = optuna.load_study(study_name="tiny", storage=url)
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < complete:
        return False
    return any("checkpoint" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _trained_once(study: optuna.Study, budget: int) -> list[optuna.trial.FrozenTrial]:
    """The budget's trials: distinct schedules, each trained to the end exactly once."""
    done = [t for t in study.trials if t.user_attrs.get("outcome") == Outcome.EVALUATED]
    ids = [t.user_attrs["schedule_id"] for t in done]
    assert len(ids) == budget and len(set(ids)) == budget, ids
    assert all(t.state == TrialState.COMPLETE for t in done)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    return done


def test_a_killed_worker_is_restarted_from_its_checkpoint_and_deterministic_errors_are_not(tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    stall.mkdir()
    space = _space(tmp_path, model={"arch": "nin_faulty"}, seeds=[STALL, NAN, DAMAGED, "orig"], trainer={"epochs": 2},
                   search={"trials": 3, "max_retries": 0}, resources={"max_concurrent": 1, "max_failures": 2})  # fmt: skip
    log = tmp_path / "driver.log"
    argv = [str(space), "--runs-dir", "runs", "--no-estimate", "--no-export"]
    proc = _start(_driver_script(argv, stall, damaged=True), tmp_path, log)
    try:
        url = f"sqlite:///{tmp_path}/runs/tiny/study.db"
        _wait(lambda: stalled(stall) and _checkpoint_recorded(url), proc, log, "a stalled worker, its epoch-1 checkpoint recorded")
        (worker,) = stalled(stall)
        scratch = f"{SCRATCH_PREFIX}{worker['pid']}-*"
        assert len(list(Path(tempfile.gettempdir()).glob(scratch))) == 1  # its training state, mid-epoch
        os.kill(worker["pid"], signal.SIGKILL)  # the Ray worker running the trial, held in epoch 2
        (stall / "release").touch()  # only now: the killed worker never got past its stall
        code = proc.wait(900)
    finally:
        _reap(proc)
    out = log.read_text()
    assert code == 0, out[-4000:]
    assert not list(Path(tempfile.gettempdir()).glob(scratch))  # the killed worker's folder was swept
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/runs/tiny/study.db")
    done = _trained_once(study, 3)
    (t,) = [t for t in done if t.user_attrs["schedule_id"] == STALL]
    assert t.user_attrs["recoveries"] == 1 and t.user_attrs["resumed_from_epoch"] == 1
    assert len(t.user_attrs["val_accuracy_per_epoch"]) == 2
    restart = next(line for line in out.splitlines() if "Ray Tune restarts it" in line)
    assert f"#{t.number} {STALL}: its worker or node died during epoch 2" in restart and "epoch-1 checkpoint" in restart
    failed = [x for x in study.trials if x.user_attrs.get("outcome") == Outcome.FAILED]
    by_id = {x.user_attrs["schedule_id"]: x for x in failed}
    assert len(by_id) == len(failed)  # each failed once, at once: neither Tune nor the searcher retried it
    assert all(x.state == TrialState.FAIL and "recoveries" not in x.user_attrs for x in failed)
    assert all(sid == DAMAGED or x.user_attrs["schedule"]["conv2a"] == 4 for sid, x in by_id.items())  # only the faulty ones
    nan, damaged = by_id[NAN], by_id[DAMAGED]
    assert nan.user_attrs["fail_reason"].startswith("deeproots.training.NonFiniteLossError: training loss is nan")
    assert damaged.user_attrs["fail_reason"] == "deeproots.data.DataError: damaged image train/0.png: cannot identify image file (test)"
    print(f"\nworker pid {worker['pid']} killed in epoch 2 of trial #{t.number} ({STALL}); {restart.strip()}; "
          f"finished: val_accuracy_per_epoch {t.user_attrs['val_accuracy_per_epoch']}, recoveries {t.user_attrs['recoveries']}, "
          f"resumed_from_epoch {t.user_attrs['resumed_from_epoch']}; NaN trial #{nan.number} and damaged-image trial "
          f"#{damaged.number}: FAIL at once, not retried ({nan.user_attrs['fail_reason'][:60]}...; "
          f"{damaged.user_attrs['fail_reason']})")


def _run_driver(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def _one_finished_one_held(tmp_path: Path) -> tuple[subprocess.Popen, str, Path, Path, list[str]]:
    """Start a search of 3 trials of 3 epochs, one at a time, and return (driver, study URL, stall
    folder, driver log, the driver's arguments) once trial 1 (orig) is COMPLETE and trial 2 (STALL) is held in epoch 2 with
    its epoch-1 checkpoint recorded. The caller reaps the driver."""
    stall = tmp_path / "stall"
    stall.mkdir()
    space = _space(tmp_path, model={"arch": "nin_faulty"}, seeds=["orig", STALL], trainer={"epochs": 3},
                   search={"trials": 3}, resources={"max_concurrent": 1})  # fmt: skip
    argv = [str(space), "--runs-dir", "runs", "--no-estimate", "--no-export"]
    url = f"sqlite:///{tmp_path}/runs/tiny/study.db"
    log = tmp_path / "first.log"
    proc = _start(_driver_script(argv, stall), tmp_path, log)
    try:
        _wait(lambda: stalled(stall) and _checkpoint_recorded(url, complete=1), proc, log,
              "a finished trial and a stalled one with its epoch-1 checkpoint recorded")  # fmt: skip
    except BaseException:
        _reap(proc)
        raise
    return proc, url, stall, log, argv


def test_resume_after_kill_9_of_the_driver(tmp_path: Path) -> None:
    """The driver is SIGKILLed while one trial is finished and the next is held in epoch 2 with its
    epoch-1 checkpoint recorded; the rerun keeps the finished one and resumes the other from there."""
    proc, url, stall, _, argv = _one_finished_one_held(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        _reap(proc)  # the driver's Ray, the stalled worker with it
        (stall / "release").touch()  # the rerun does not stall
    first = optuna.load_study(study_name="tiny", storage=url)
    finished_before = {t.number: t.user_attrs["schedule_id"] for t in first.get_trials(states=(TrialState.COMPLETE,))}
    (killed,) = [t.number for t in first.get_trials(states=(TrialState.RUNNING,)) if "checkpoint" in t.user_attrs]
    second = _run_driver(_driver_script(argv, stall), tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "marked FAIL" in second.stdout and "resuming from the checkpoint it reached" in second.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    done = _trained_once(study, 3)  # the budget, none trained twice
    for number, sid in finished_before.items():  # a finished trial is kept, never trained again
        assert study.trials[number].state == TrialState.COMPLETE
        assert [t.number for t in done if t.user_attrs["schedule_id"] == sid] == [number]
    k = study.trials[killed]  # failed by its missed heartbeats, retried from the checkpoint it had reached
    assert k.state == TrialState.FAIL and TrialView(k).outcome == Outcome.INTERRUPTED
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == k.params and k.user_attrs["schedule_id"] == STALL
    assert retry.user_attrs["resumed_from_epoch"] == 1 and len(retry.user_attrs["val_accuracy_per_epoch"]) == 3
    print(f"\ntrial #{killed} ({STALL}) killed with its driver; retried as #{retry.number} "
          f"from its epoch-{retry.user_attrs['resumed_from_epoch']} checkpoint {k.user_attrs['checkpoint']}")


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C while one trial is finished and the next is held mid-epoch: exit 130, no trial left
    RUNNING, and the rerun finishes the budget without training anything twice."""
    proc, url, stall, log, argv = _one_finished_one_held(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        (stall / "release").touch()  # whether Tune stops the held trial before or after it goes on, the budget is not spent
        code = proc.wait(900)
    finally:
        _reap(proc)
    out = log.read_text()
    assert code == 130, out[-4000:]
    assert "rerun the same command to resume" in out and "Traceback" not in out
    first = optuna.load_study(study_name="tiny", storage=url)
    assert not first.get_trials(states=(TrialState.RUNNING,))  # every open trial was closed
    second = _run_driver(_driver_script(argv, stall), tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    _trained_once(optuna.load_study(study_name="tiny", storage=url), 3)


def test_a_removed_node_moves_its_trial_to_the_other_node(tmp_path: Path) -> None:
    """Two worker nodes of one CPU each (the head runs the driver only): the stalled trial's node is
    removed, so the trial provably finishes on the other node -- both nodes ran it, whatever the timing."""
    stall = tmp_path / "stall"
    stall.mkdir()
    space = _space(tmp_path, model={"arch": "nin_faulty"}, seeds=[STALL, "orig"], trainer={"epochs": 2},
                   search={"trials": 3}, resources={"max_failures": 2})  # fmt: skip
    argv = [str(space), "--runs-dir", "runs", "--no-estimate", "--no-export", "--address", "CLUSTER"]
    env = {"PYTHONPATH": str(ROOT), STALL_ENV: str(stall)}
    cluster = f"""
import threading, json, os, signal
from pathlib import Path
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 0, "include_dashboard": False}})
nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
cluster.wait_for_nodes()
def checkpoint_recorded():  # the driver recorded the stalled trial's epoch-1 checkpoint: Tune has it
    import optuna
    from optuna.trial import TrialState
    study = optuna.load_study(study_name="tiny", storage={f"sqlite:///{tmp_path}/runs/tiny/study.db"!r})
    return any("checkpoint" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
def remove_stalled_node():
    folder = Path({str(stall)!r})
    while not list(folder.glob("stalled-*.json")) or not checkpoint_recorded():
        threading.Event().wait(0.2)
    info = json.loads(next(folder.glob("stalled-*.json")).read_text())
    node = next(n for n in nodes if n.node_id == info["node_id"])
    cluster.remove_node(node, allow_graceful=False)
    # A lost machine takes its processes with it; a worker left orphaned by its killed raylet could
    # still finish the epoch and hand its result straight to the driver. SIGKILL is final once sent.
    try:
        os.kill(info["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    (folder / "release").touch()  # only now: the trial never got past its stall on the removed node
    (folder / "removed.json").write_text(json.dumps({{"node_id": info["node_id"]}}))
threading.Thread(target=remove_stalled_node, daemon=True).start()
ray.init(address=cluster.address, runtime_env={{"worker_process_setup_hook": "tests.search.faulty.register", "env_vars": {env!r}}})
"""
    script = _driver_script(argv, stall, cluster).replace("'CLUSTER'", "cluster.address")
    script = script.replace("sys.exit(code)", "ray.shutdown()\ncluster.shutdown()\nsys.exit(code)")
    log = tmp_path / "driver.log"
    proc = _start(script, tmp_path, log)
    try:
        code = proc.wait(1200)
    finally:
        _reap(proc)
    out = log.read_text()
    assert code == 0, out[-4000:]
    removed = yaml.safe_load((stall / "removed.json").read_text())["node_id"]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/runs/tiny/study.db")
    done = _trained_once(study, 3)
    (t,) = [t for t in done if t.user_attrs["schedule_id"] == STALL]
    assert t.user_attrs["node_id"] != removed  # finished on the other node ...
    assert t.user_attrs["recoveries"] == 1 and t.user_attrs["resumed_from_epoch"] == 1  # ... from its epoch-1 checkpoint
    print(f"\ntrial #{t.number} stalled on node {removed[:8]}, which was removed; restarted from epoch "
          f"{t.user_attrs['resumed_from_epoch']} and finished on node {t.user_attrs['node_id'][:8]}")


def test_trials_in_s3_survive_a_driver_killed_mid_upload_and_export_from_there(tmp_path: Path, s3: Any) -> None:
    """Trials keep their checkpoints in a real S3 server; the driver is killed while a worker uploads
    the second trial's epoch-2 checkpoint (its request held by the server); the rerun resumes that
    trial from its epoch-1 checkpoint -- never from the half-written one --, keeps the finished one,
    exports with test accuracy from S3, and nothing lands under runs/tiny/ray."""
    import deeproots
    from tests.object_store import CREDENTIALS

    bucket = s3.bucket("deeproots")
    storage_path = s3.uri(bucket, "runs")
    held = s3.hold(r"/deeproots/runs/[^/]+/trial_[^/]+/checkpoint_000001/", nth=2)  # trial B's epoch-2 checkpoint
    space = _space(tmp_path, trainer={"epochs": 3}, search={"trials": 3}, resources={"max_concurrent": 1})
    cmd = [PYTHON, "-m", "search.run", str(space), "--runs-dir", "runs", "--no-estimate", "--storage-path", storage_path]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **CREDENTIALS}
    log = tmp_path / "first.log"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"sqlite:///{tmp_path}/runs/tiny/study.db"
        _wait(lambda: held.reached.is_set() and _checkpoint_recorded(url, complete=1), proc, log,
              "an upload of the second trial's epoch-2 checkpoint, its epoch-1 checkpoint recorded")  # fmt: skip
        proc.send_signal(signal.SIGKILL)  # the driver, while a worker is writing a checkpoint
        proc.wait(60)
    finally:
        _reap(proc)
        held.release.set()
    url = f"sqlite:///{tmp_path}/runs/tiny/study.db"
    first = optuna.load_study(study_name="tiny", storage=url)
    (finished,) = first.get_trials(states=(TrialState.COMPLETE,))
    (killed,) = first.get_trials(states=(TrialState.RUNNING,))
    assert killed.user_attrs["checkpoint"].startswith("s3://deeproots/runs/tiny-")
    assert "/checkpoint_000000?" in killed.user_attrs["checkpoint"]  # the last complete one: epoch 1

    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "resuming from the checkpoint it reached" in second.stdout and "exporting the Pareto set" in second.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    done = _trained_once(study, 3)
    assert study.trials[finished.number].state == TrialState.COMPLETE  # kept, not trained again
    assert [t.number for t in done if t.user_attrs["schedule_id"] == finished.user_attrs["schedule_id"]] == [finished.number]
    assert TrialView(study.trials[killed.number]).outcome == Outcome.INTERRUPTED
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 1
    for t in done:  # every checkpoint in S3, the endpoint in its URI
        assert t.user_attrs["checkpoint"].startswith("s3://deeproots/runs/tiny-") and t.user_attrs["checkpoint"].endswith(
            f"?endpoint_override=127.0.0.1:{s3.port}&scheme=http")
    assert not (tmp_path / "runs/tiny/ray").exists()  # nothing of Tune's on the driver's disk under the run
    export = tmp_path / "runs/tiny/export"
    configs = sorted(export.glob("nin_*.yaml"))
    assert configs
    for path in configs:
        model = deeproots.load_exported(path)
        assert model.exported.metrics["test_accuracy"] is not None and model.exported.weights_sha256
    client = s3.client()  # the export, copied to the bucket, loads from there by URI
    client.upload_file(str(configs[0]), bucket, f"export/{configs[0].name}")
    client.upload_file(str(configs[0].with_suffix(".safetensors")), bucket, f"export/{configs[0].stem}.safetensors")
    remote = deeproots.load_exported(s3.uri(bucket, f"export/{configs[0].name}"))
    local = deeproots.load_exported(configs[0])
    assert all((a == b).all() for a, b in zip(remote.state_dict().values(), local.state_dict().values()))
    partial = [k for k in s3.keys(bucket, "runs/") if "/checkpoint_000001/" in k and killed.user_attrs["tune_trial_id"] in k]
    print(f"\nS3 storage {storage_path}: driver killed during {held.held[0]}; trial #{killed.number} resumed as "
          f"#{retry.number} from epoch {retry.user_attrs['resumed_from_epoch']} (what reached S3 of its unrecorded epoch-2 "
          f"checkpoint: {[k.rsplit('/', 1)[-1] or '(folder)' for k in partial] or 'nothing'}, never used); finished trial #{finished.number} kept; "
          f"{len(configs)} model(s) exported with test accuracy "
          f"{[round(deeproots.load_exported(p).exported.metrics['test_accuracy'], 4) for p in configs]}; "
          f"{len(s3.keys(bucket, 'runs/'))} objects in s3://deeproots/runs/, runs/tiny/ray absent")


def test_a_postgresql_study_refuses_a_second_driver_resumes_exports_and_shows_in_the_dashboard(
    tmp_path: Path, postgres_url: str
) -> None:
    import sqlalchemy as sa

    from search.outputs._plots import GRAPH_IDS
    from tests.search.test_dashboard import _study_detail, dashboard

    stall = tmp_path / "stall"
    stall.mkdir()
    space = _space(tmp_path, model={"arch": "nin_faulty"}, seeds=[STALL, "orig"], trainer={"epochs": 2},
                   search={"trials": 3}, resources={"max_concurrent": 1})  # fmt: skip
    argv = [str(space), "--runs-dir", "runs", "--no-estimate", "--storage", postgres_url]
    (tmp_path / "a").mkdir()
    log = tmp_path / "a/first.log"
    proc = _start(_driver_script(argv, stall), tmp_path / "a", log)

    try:
        _wait(lambda: stalled(stall) and _checkpoint_recorded(postgres_url), proc, log,
              "a stalled worker, its epoch-1 checkpoint recorded")  # fmt: skip
        # A second driver on the same study, from another run folder: refused before it writes anything.
        (tmp_path / "b").mkdir()
        refuse = "import sys\nfrom tests.search.faulty import register\nregister()\nfrom search.run import main\n" \
                 f"sys.exit(main({argv!r}))"  # fmt: skip
        second = subprocess.run([PYTHON, "-c", refuse], cwd=tmp_path / "b", capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        assert second.returncode == 2, second.stdout + second.stderr
        (line,) = second.stderr.splitlines()
        assert line.startswith("error: study 'tiny' in postgresql+psycopg2://deeproots:***@") and ":deeproots@" not in line
        assert f"is being searched by another driver: pid {proc.pid} on host " in line
        assert list((tmp_path / "b").iterdir()) == []  # nothing written
        proc.send_signal(signal.SIGKILL)  # the first driver dies mid-epoch
        proc.wait(60)
    finally:
        _reap(proc)
        (stall / "release").touch()
    rerun = subprocess.run([PYTHON, "-c", _driver_script(argv, stall)], cwd=tmp_path / "a", capture_output=True, text=True,
                           timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert "took study 'tiny' over from a driver that is gone" in rerun.stdout
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    done = _trained_once(study, 3)
    (t,) = [t for t in done if t.user_attrs["schedule_id"] == STALL]
    assert t.user_attrs["resumed_from_epoch"] == 1 and t.user_attrs["retry_of"] == 0
    assert TrialView(study.trials[0]).outcome == Outcome.INTERRUPTED
    configs = sorted((tmp_path / "a/runs/tiny/export").glob("nin_faulty_*.yaml"))
    assert configs and all(yaml.safe_load(p.read_text().split("\n", 3)[-1])["metrics"]["test_accuracy"] is not None for p in configs)
    with dashboard(postgres_url) as base:  # optuna-dashboard's HTTP API on the PostgreSQL study
        detail = _study_detail(base, "tiny")
        assert detail["objective_names"] == ["val_accuracy", "flops", "params"]
        assert {"schedule_id", "checkpoint", "driver", "outcome"} <= {a["key"] for a in detail["union_user_attrs"]}
        assert sum(x["state"] == "Complete" for x in detail["trials"]) == 3
        assert {GRAPH_IDS["flops"], GRAPH_IDS["hypervolume"]} <= {g["id"] for g in detail["plotly_graph_objects"]}
        assert "Pareto set" in detail["note"]["body"]
    with sa.create_engine(postgres_url, poolclass=sa.pool.NullPool).connect() as c:
        version = c.execute(sa.text("select version()")).scalar_one()
    print(f"\n{version}\nsecond driver: {line}\nrerun: trial #0 ({STALL}) failed by its missed heartbeats, resumed as "
          f"#{t.number} from epoch {t.user_attrs['resumed_from_epoch']}; {len(configs)} model(s) exported; dashboard API: "
          f"{sum(x['state'] == 'Complete' for x in detail['trials'])} complete trials, figures and note attached")
