"""What a search on a cluster stands on, without Ray: the trials' storage location (local, NFS, S3),
the one-driver lock in the study's database (SQLite and a real PostgreSQL), SQLite on a network file
system refused."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from search import SpaceError, load_space
from search.engine._lock import StudyLock
from search.engine._study import plan_run, sqlite_on_network_fs
from search.engine._trial_storage import TrialStorage, checkpoint_at, record_location, resolve_checkpoint_uri
from search.run import main
from tests.search.conftest import tiny

# ------------------------------------------------------------------------------ trial storage


def test_a_local_storage_path_is_absolute_and_checkpoints_under_the_run_are_relative(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    st = TrialStorage.parse("runs/nin/ray", tmp_path / "runs/nin")
    assert st.uri == str(tmp_path / "runs/nin/ray") and st.is_local
    assert TrialStorage.parse("file:///mnt/nfs/deeproots", ".").uri == "/mnt/nfs/deeproots"
    assert st.uri_of(f"{st.uri}/nin-1/trial_a/checkpoint_000002") == f"{st.uri}/nin-1/trial_a/checkpoint_000002"
    ckpt = f"{st.uri}/nin-1/trial_a/checkpoint_000002"
    assert st.record(ckpt) == "ray/nin-1/trial_a/checkpoint_000002"
    assert record_location("/mnt/nfs/deeproots/x", tmp_path / "runs/nin") == "/mnt/nfs/deeproots/x"
    (tmp_path / "runs/nin/ray/nin-1/trial_a/checkpoint_000002").mkdir(parents=True)
    assert resolve_checkpoint_uri("ray/nin-1/trial_a/checkpoint_000002", [tmp_path / "elsewhere", tmp_path / "runs/nin"]) == ckpt
    assert resolve_checkpoint_uri("ray/missing", [tmp_path / "runs/nin"]) is None


def test_an_s3_storage_path_keeps_its_endpoint_in_every_checkpoint_uri() -> None:
    st = TrialStorage.parse("s3://bucket/deeproots?endpoint_override=minio:9000&scheme=http", "runs/nin")
    assert not st.is_local
    fs, path = st.filesystem()
    assert type(fs).__name__ == "S3FileSystem" and path == "bucket/deeproots"
    assert st.run_config() == {"storage_path": "bucket/deeproots", "storage_filesystem": fs}
    assert st.uri_of("bucket/deeproots/nin-1/trial_a/checkpoint_000001") == (
        "s3://bucket/deeproots/nin-1/trial_a/checkpoint_000001?endpoint_override=minio:9000&scheme=http"
    )
    assert st.record("s3://bucket/x") == "s3://bucket/x"
    with pytest.raises(ValueError, match="not under the storage location"):
        st.uri_of("other/deeproots/x")


@pytest.mark.parametrize(
    "location, message",
    [
        ("s3://key:secret@bucket/x", "credentials in the URI would be recorded in the study"),
        ("s3://bucket/x?secret_key=abc", "secret_key in the URI would be recorded in the study"),
        ("s3:///x", "names no bucket or host"),
    ],
)
def test_a_storage_path_with_credentials_or_no_bucket_is_one_line_exit_2(location: str, message: str, tmp_path: Path, capsys) -> None:
    space = tmp_path / "space.yaml"
    import yaml

    space.write_text(yaml.safe_dump(tiny()))
    code = main([str(space), "--runs-dir", str(tmp_path / "runs"), "--storage-path", location, "--no-estimate"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --storage-path: ") and message in err and err.count("\n") == 1, err
    assert "secret" not in err.replace("secret_key", "") and "key:" not in err  # the secret is never printed
    assert not (tmp_path / "runs").exists()  # nothing written
    with pytest.raises(SpaceError) as e:
        load_space(tiny(storage_path=location))
    assert e.value.key == "storage_path"


def test_storage_path_is_not_part_of_the_identity_a_rerun_compares() -> None:
    a = load_space(tiny())
    b = load_space(tiny(storage_path="s3://bucket/elsewhere"))
    assert a.identity() == b.identity() and b.spec.storage_path == "s3://bucket/elsewhere"


def test_a_storage_path_that_cannot_be_written_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SpaceError, match="storage_path: cannot write to .*a-file/ray: .*a-file is a file, not a folder; name a folder"):
        TrialStorage.parse(tmp_path / "a-file/ray", tmp_path).check_writable()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_check_writable_and_checkpoints_on_a_real_s3_server(s3: Any, tmp_path: Path) -> None:
    bucket = s3.bucket("deeproots")
    st = TrialStorage.parse(s3.uri(bucket, "runs"), tmp_path)
    st.check_writable()
    assert not any(".deeproots-write-test" in k for k in s3.keys(bucket))  # the probe is deleted
    fs, path = st.filesystem()
    with fs.open_output_stream(f"{path}/exp/trial_a/checkpoint_000000/result.json") as f:
        f.write(b'{"status": "done"}')
    uri = st.uri_of(f"{path}/exp/trial_a/checkpoint_000000")
    assert uri == s3.uri(bucket, "runs/exp/trial_a/checkpoint_000000")
    with checkpoint_at(uri).as_directory() as folder:  # what the export does with a recorded URI
        assert (Path(folder) / "result.json").read_text() == '{"status": "done"}'
    with pytest.raises(SpaceError, match=r"storage_path: cannot write to s3://missing/runs\?endpoint_override="):
        TrialStorage.parse(s3.uri("missing", "runs"), tmp_path).check_writable()


# ------------------------------------------------------------------------------ SQLite on NFS

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export {nfs} nfs4 rw,relatime,vers=4.2 0 0
/dev/sdb1 {nfs}/local-disk ext4 rw 0 0
"""


def test_sqlite_on_a_network_file_system_is_found_by_its_mount(tmp_path: Path) -> None:
    mounts = MOUNTS.format(nfs=tmp_path / "nfs")
    why = sqlite_on_network_fs(f"sqlite:///{tmp_path}/nfs/runs/nin/study.db", mounts)
    assert why and why.startswith(f"sqlite:///{tmp_path}/nfs/runs/nin/study.db sits on a network file system (nfs4 at {tmp_path}/nfs)")
    assert "postgresql" in why and "\n" not in why
    assert sqlite_on_network_fs(f"sqlite:///{tmp_path}/nfs/local-disk/study.db", mounts) is None  # the longest mount wins
    assert sqlite_on_network_fs(f"sqlite:///{tmp_path}/study.db", mounts) is None
    assert sqlite_on_network_fs("postgresql+psycopg2://u@h/db", mounts) is None


def test_a_search_with_its_sqlite_study_on_nfs_is_refused_in_one_line_and_a_dry_run_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from search.engine import _study

    monkeypatch.setattr(_study, "_read_mounts", lambda: MOUNTS.format(nfs=tmp_path))
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny()))
    assert main([str(space), "--runs-dir", str(tmp_path / "runs"), "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: storage: sqlite:///{tmp_path}/runs/tiny/study.db sits on a network file system (nfs4 at ")
    assert err.count("\n") == 1 and not (tmp_path / "runs").exists()
    assert main([str(space), "--runs-dir", str(tmp_path / "runs"), "--dry-run", "--no-estimate"]) == 0
    assert "warning: storage: sqlite:///" in capsys.readouterr().out
    plan = plan_run(load_space(tiny()), runs_dir=tmp_path / "runs", refuse=False)
    assert plan.problem is not None


# ------------------------------------------------------------------------------ the driver lock


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite in a file, or a fresh one on the PostgreSQL server of the tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/study.db"
    else:
        yield request.getfixturevalue("postgres_url")


def _set_holder(url: str, study: str, **values: Any) -> None:
    import sqlalchemy as sa

    from search.engine._lock import TABLE

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    table = sa.Table(TABLE, sa.MetaData(), autoload_with=engine)
    with engine.begin() as c:
        assert c.execute(table.update().where(table.c.study_name == study).values(**values)).rowcount == 1
    engine.dispose()


def test_a_second_driver_is_refused_in_one_line_naming_host_and_pid(db_url: str) -> None:
    first = StudyLock.acquire(db_url, "nin")
    try:
        with pytest.raises(SpaceError) as e:
            StudyLock.acquire(db_url, "nin")
        line = str(e.value)
        assert "\n" not in line and f"pid {os.getpid()} on host {socket.gethostname()} (since " in line
        assert line.startswith("study 'nin' in ") and "is being searched by another driver" in line
        assert ":deeproots@" not in line  # a password in the URL is hidden
        other = StudyLock.acquire(db_url, "nin-2")  # another study of the same database is free
        other.release()
        assert first.beat()
    finally:
        first.release()
    StudyLock.acquire(db_url, "nin").release()  # released: free again


def test_a_lock_left_by_a_dead_driver_on_this_host_is_taken_over_at_once(db_url: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = StudyLock.acquire(db_url, "nin")
    _set_holder(db_url, "nin", pid=dead.pid, pid_started="0")  # as if that process had held it and died
    new = StudyLock.acquire(db_url, "nin")
    try:
        assert new.took_over == f"pid {dead.pid} on host {socket.gethostname()}"
        assert not old.beat()  # the old holder finds out: it lost the study
        assert new.beat() and new.holder().pid == os.getpid()
    finally:
        new.release()
        old.release()  # a no-op: not its row any more


def test_a_lock_held_from_another_host_is_taken_over_only_after_its_heartbeat_stops(db_url: str) -> None:
    held = StudyLock.acquire(db_url, "nin")
    _set_holder(db_url, "nin", host="gpu-node-7", pid=4242)
    with pytest.raises(SpaceError, match=r"pid 4242 on host gpu-node-7 \(since .*, last heartbeat \d+ s ago\)"):
        StudyLock.acquire(db_url, "nin", stale_seconds=3600)  # beating within the hour: alive
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    _set_holder(db_url, "nin", heartbeat_at=long_ago)
    taken = StudyLock.acquire(db_url, "nin", stale_seconds=60)
    assert taken.took_over == "pid 4242 on host gpu-node-7"
    taken.release()
    held.release()


def test_the_lock_lives_in_the_database_not_in_the_run_folder(tmp_path: Path, postgres_url: str) -> None:
    """Two run folders on one PostgreSQL study: the second driver is refused before it writes anything."""
    from search import run_search

    space = load_space(tiny())
    held = StudyLock.acquire(postgres_url, "tiny")
    try:
        with pytest.raises(SpaceError, match=r"study 'tiny' in postgresql\+psycopg2://deeproots:\*\*\*@.* is being searched by another driver"):
            run_search(space, runs_dir=tmp_path / "elsewhere", storage=postgres_url, estimate=False, export=False,
                       print_fn=lambda _: None)  # fmt: skip
    finally:
        held.release()
    assert not (tmp_path / "elsewhere").exists()


# ------------------------------------------------------------------------------ the README's cluster commands


def test_the_readme_cluster_commands_parse_and_name_only_options_that_exist() -> None:
    """Every ``python -m search.run`` line of the README's cluster section is a valid command line."""
    import re
    import shlex

    from search.run import _parser

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## On a Ray cluster"):]
    section = section[: section.index("\n## ", 1)]
    block = section[section.index("```bash"):].split("```")[1].replace("\\\n", " ")
    commands = [line.split("#")[0] for line in block.splitlines() if line.strip().startswith("python -m search.run")]
    assert len(commands) == 2
    for line in commands:
        args = _parser().parse_args(shlex.split(line)[3:])
        assert args.address == "auto" and args.storage.startswith("postgresql+psycopg2://")
        assert re.match(r"(s3://|/mnt/)", args.storage_path)
