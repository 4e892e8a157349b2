"""optuna-dashboard on a study written by the search's code: its HTTP API lists the study with its
metric names, user attributes and the figures export attaches -- also while another process keeps
writing to the same SQLite file (WAL), with no "database is locked"."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest


ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = ["val_accuracy", "flops", "params"]


def _quiet(*_: Any) -> None:
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()


@contextlib.contextmanager
def dashboard(storage_url: str) -> Iterator[str]:
    """``optuna-dashboard STORAGE --host 127.0.0.1 --port P`` in a subprocess; yields its base URL."""
    script = Path(sys.executable).parent / "optuna-dashboard"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    port = _free_port()
    proc = subprocess.Popen([*cmd, storage_url, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # a guard against a hang; busy CI machines start it slowly
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                _get(f"{base}/api/meta", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("optuna-dashboard did not answer within 300 s")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _study_detail(base: str, name: str) -> dict[str, Any]:
    studies = _get(f"{base}/api/studies")["study_summaries"]
    (summary,) = [s for s in studies if s["study_name"] == name]
    assert summary["directions"] == ["maximize", "minimize", "minimize"]
    return _get(f"{base}/api/studies/{summary['study_id']}")


def test_dashboard_lists_the_study_metric_names_attributes_and_export_figures(run: Path) -> None:
    from search.outputs._plots import GRAPH_IDS
    from search.export import export_run

    result = export_run(run, print_fn=_quiet)
    with dashboard(f"sqlite:///{run / 'study.db'}") as base:
        detail = _study_detail(base, "exp")
        assert detail["objective_names"] == OBJECTIVES
        attrs = {a["key"] for a in detail["union_user_attrs"]}
        assert {"schedule_id", "schedule", "flops", "params", "outcome", "val_accuracy_per_epoch", "checkpoint"} <= attrs
        assert sum(t["state"] == "Complete" for t in detail["trials"]) == 5  # (+ duplicate proposals, FAIL)
        best = {_attr(t, "schedule_id") for t in detail["best_trials"]}
        assert best == {r["schedule_id"] for r in result.rows}
        graphs = {g["id"] for g in detail["plotly_graph_objects"]}
        assert {GRAPH_IDS["flops"], GRAPH_IDS["params"], GRAPH_IDS["hypervolume"]} <= graphs
        assert "Pareto set" in detail["note"]["body"]
        assert "<html" in _get(f"{base}/dashboard").lower()  # the app page itself is served


def _writer_trials(url: str) -> int:
    import optuna

    study = optuna.load_study(study_name="exp", storage=url)
    return sum(t.user_attrs.get("schedule_id", "").startswith("writer:") for t in study.get_trials(deepcopy=False))


def _attr(trial: dict[str, Any], key: str) -> Any:
    return next(a["value"] for a in trial["user_attrs"] if a["key"] == key)


def test_export_and_dashboard_while_another_process_writes(run: Path, tmp_path: Path) -> None:
    """A second process commits trials to the same SQLite file as fast as it can (opened with the
    search's ``open_storage``, as the search's driver does) while the dashboard is polled and the
    export runs -- which writes its figures and note to the study too."""
    from search.export import export_run

    url = f"sqlite:///{run / 'study.db'}"
    stop = tmp_path / "stop"
    t0 = time.perf_counter()
    writer = subprocess.Popen([sys.executable, "-m", "tests.search.export_support", url, "exp", str(stop)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    errors: list[str] = []
    polls = [0]
    timings: dict[str, float] = {}
    try:
        with dashboard(url) as base:  # starts while the writer starts
            timings["dashboard up"] = time.perf_counter() - t0
            assert writer.stdout is not None
            first = writer.stdout.readline()
            assert first.strip() == "ready", f"writer did not start: {first!r} {writer.stderr.read() if writer.stderr else ''}"
            timings["writer writing"] = time.perf_counter() - t0
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    try:
                        detail = _study_detail(base, "exp")
                        assert detail["objective_names"] == OBJECTIVES
                        polls[0] += 1
                    except Exception as e:  # noqa: BLE001 (collected and reported below)
                        errors.append(f"dashboard: {e!r}")
                    time.sleep(0.05)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                result = export_run(run, print_fn=_quiet)  # reads, evaluates, attaches figures + note
                timings["exported"] = time.perf_counter() - t0
                # Counted, not timed: at least two polls answered and two trials committed, however
                # fast the export ran on this machine (a guard against a hang, not a timing assumption).
                deadline = time.time() + 300
                while (polls[0] < 2 or _writer_trials(url) < 2) and not errors and time.time() < deadline:
                    time.sleep(0.1)
            finally:
                done.set()
                poller.join(timeout=60)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-3000:]
    assert "locked" not in err.lower()
    assert errors == []
    assert polls[0] >= 2
    written = int(out.split()[-1])
    assert written >= 2, out
    print(f"writer committed {written} trials; dashboard answered {polls[0]} polls; {timings}")
    import optuna

    study = optuna.load_study(study_name="exp", storage=url)
    assert sum(t.user_attrs.get("schedule_id", "").startswith("writer:") for t in study.trials) == written
    # the writer's trials are dominated: the exported front is the study's real one
    assert result.rows and not any(r["schedule_id"].startswith("writer:") for r in result.rows)
    assert all(r["test_accuracy"] is not None for r in result.rows)
