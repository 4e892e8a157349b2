"""Bad input to the run-folder and storage readers: one line, exit 2, nothing changed or half-written.

A run folder is self-contained (a copy reads its own study, whatever the working directory); SQLite
URLs built from paths round-trip (``?``, ``#``, ``%``); a database that is not a study is looked into
read-only and left byte-identical.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from search.engine._study_db import StorageError, check_storage_url, check_study_storage, sqlite_path, sqlite_url
from tests.search.conftest import tiny
from tests.search.export_support import make_run

pytestmark = pytest.mark.filterwarnings("ignore")


def _one_line(capsys: Any) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory: Any) -> Path:
    """A run made with a working-directory-relative runs folder (``run.json`` records ``sqlite:///runs/...``)."""
    import os

    base = tmp_path_factory.mktemp("rel")
    old = os.getcwd()
    os.chdir(base)
    try:
        make_run(Path("runs"), name="exp", trials=2)
    finally:
        os.chdir(old)
    return base


def _mark_original(run: Path, token: str) -> None:
    import optuna

    study = optuna.load_study(study_name="exp", storage=sqlite_url(run / "study.db"))
    study.set_user_attr("which", token)


@pytest.mark.parametrize("old_format", [False, True])
def test_copied_run_reads_its_own_study(relative_run: Path, tmp_path: Path, monkeypatch: Any, old_format: bool) -> None:
    from search.engine._study import read_run
    from search.outputs._locate import locate_run, open_run

    copy = shutil.copytree(relative_run / "runs" / "exp", tmp_path / "ex" / "copy")
    doc = json.loads((copy / "run.json").read_text())
    assert doc["storage"] == "sqlite:///runs/exp/study.db"
    if old_format:  # a run.json written before the folder-relative keys
        doc.pop("study_db", None)
        doc.pop("ray_dir", None)
        doc["storage_path"] = str((relative_run / "runs" / "exp" / "ray").resolve())
        (copy / "run.json").write_text(json.dumps(doc))
    else:
        assert doc["study_db"] == "study.db" and doc["ray_dir"] == "ray"
    monkeypatch.chdir(relative_run)  # where runs/exp (the original) is found by the recorded relative URL
    _mark_original(relative_run / "runs" / "exp", str(tmp_path))
    target = locate_run(copy)
    assert sqlite_path(target.storage_url).resolve() == (copy / "study.db").resolve()
    view = open_run(target.storage_url, target.study_name, copy)
    assert view.live.user_attrs.get("which") != str(tmp_path)  # the copy's study, not the original's
    assert Path(read_run(copy)["storage_path"]).resolve() == (copy / "ray").resolve()  # confirm's Tune storage


@pytest.mark.parametrize("name", ["sp ace ü#%?", "a%20b", "q?x=1"])
def test_sqlite_url_round_trips(tmp_path: Path, name: str) -> None:
    from search.engine._study import RunPaths, default_storage

    path = tmp_path / name / "tiny" / "study.db"
    url = default_storage(path.parent)
    assert sqlite_path(url) == path
    from sqlalchemy.engine import make_url

    assert make_url(url).database == str(path)
    import shlex

    cmd = RunPaths(path.parent, url, "tiny").dashboard_command()
    assert shlex.split(cmd) == ["optuna-dashboard", url]


def test_run_with_odd_runs_dir_puts_db_there(tmp_path: Path) -> None:
    from search import load_space
    from search.engine._study import open_storage, plan_run

    runs = tmp_path / "sp ace ü#%?"
    plan = plan_run(load_space(tiny(), check_data=False), runs_dir=runs)
    open_storage(plan.paths.storage_url)
    assert (runs / "tiny" / "study.db").is_file()
    assert not (tmp_path / "sp ace ü#%").exists()


@pytest.mark.parametrize("content", [b"", b"user"])
def test_export_leaves_non_study_db_unchanged(tmp_path: Path, capsys: Any, content: bytes) -> None:
    from search.export import main

    run = tmp_path / "r"
    run.mkdir()
    db = run / "study.db"
    if content:
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE mine (x INTEGER)")
            con.execute("INSERT INTO mine VALUES (1)")
        con.close()
    else:
        db.write_bytes(b"")
    before = db.read_bytes()
    assert main([str(run)]) == 2
    err = _one_line(capsys)
    assert ("holds no study" in err) if not content else ("not an Optuna study" in err and "mine" in err)
    assert db.read_bytes() == before
    assert main(["--storage", sqlite_url(db), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys)
    assert db.read_bytes() == before and not (tmp_path / "o").exists()


def test_search_refuses_foreign_db(tmp_path: Path) -> None:
    from search import SpaceError, load_space
    from search.engine._study import open_storage, plan_run

    db = tmp_path / "user.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE mine (x INTEGER)")
    con.close()
    before = db.read_bytes()
    with pytest.raises(SpaceError, match="not an Optuna study"):
        plan_run(load_space(tiny(), check_data=False), runs_dir=tmp_path, storage=sqlite_url(db), refuse=False)
    with pytest.raises(StorageError):
        open_storage(sqlite_url(db))
    assert db.read_bytes() == before


@pytest.mark.parametrize(("url", "words"), [
    ("foo", "not an SQLAlchemy URL"), ("sqlite://", "in-memory"), ("sqlite:///", "in-memory"),
    ("sqlite:///:memory:", "in-memory"), ("sqlite:////proc/x/study.db", "cannot be created"),
    ("nosuchdb://u@h/d", "no backend"),
])  # fmt: skip
def test_bad_storage_url_one_line(url: str, words: str, capsys: Any, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=words):
        check_storage_url(url, create=True)
    from search.run import main

    space = tmp_path / "tiny.yaml"
    import yaml

    space.write_text(yaml.safe_dump(tiny()))
    assert main([str(space), "--dry-run", "--no-estimate", "--storage", url, "--runs-dir", str(tmp_path / "runs")]) == 2
    assert words in _one_line(capsys)


@pytest.mark.parametrize(("url", "module", "package"), [
    ("postgresql+psycopg2://user@host/db", "psycopg2", "psycopg2-binary"),
    ("postgresql://user@host/db", None, "psycopg2-binary"),  # SQLAlchemy 2.0: psycopg2; 2.1: psycopg (either named)
])  # fmt: skip
def test_postgres_without_driver_names_package(monkeypatch: Any, url: str, module: str | None, package: str) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: Any, **k: Any) -> Any:
        top = name.split(".")[0]
        if top in ("psycopg2", "psycopg") and (module is None or top == module):
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(StorageError, match=f"pip install {package}"):
        check_storage_url(url)


@pytest.mark.parametrize(("content", "words"), [("[]", "a JSON list"), ("{not json", "not JSON"),
                                                ('{"storage": 3}', "'storage' is 3")])  # fmt: skip
def test_corrupt_run_json(tmp_path: Path, capsys: Any, content: str, words: str) -> None:
    from search.export import main

    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(content)
    assert main([str(run)]) == 2
    err = _one_line(capsys)
    assert words in err and "run.json is corrupt" in err
    assert (run / "run.json").read_text() == content


def test_export_out_and_args_checked_first(relative_run: Path, tmp_path: Path, capsys: Any) -> None:
    from search.export import main

    run = relative_run / "runs" / "exp"
    afile = tmp_path / "f"
    afile.write_text("x")
    assert main([str(run), "--out", str(afile)]) == 2
    assert "is a file" in _one_line(capsys)
    assert main([str(run), "--out", "/proc/zz"]) == 2
    assert "--out /proc/zz" in _one_line(capsys)
    assert main([str(afile)]) == 2
    assert "is a file, not a run folder" in _one_line(capsys)
    assert main(["--onnx"]) == 2
    assert "neither was given" in _one_line(capsys)
    assert main([str(run), "--data-root", str(tmp_path / "nonexistent")]) == 2
    assert "--data-root" in _one_line(capsys)
    assert not (run / "export").exists()


def test_relative_sqlite_hint(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="four slashes: sqlite:////tmp/"):
        check_study_storage("sqlite:///tmp/x-deeproots-none/new.db")
