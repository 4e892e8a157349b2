"""Fixtures every test package may use: a real S3-compatible object store and a real PostgreSQL database.

* ``s3``: moto's S3 in server mode on 127.0.0.1 (:mod:`tests.object_store`), credentials in this
  process's environment; skipped, saying why, when ``moto[server]`` is not installed.
* ``postgres_url``: a fresh database on the PostgreSQL server ``DEEPROOTS_TEST_POSTGRES`` names (a
  SQLAlchemy URL of a role that may create databases; ``.ci/run`` starts a server and sets it),
  dropped afterwards; skipped, saying why, only where no server can be had.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterator

import pytest

POSTGRES_ENV = "DEEPROOTS_TEST_POSTGRES"


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A running S3 server (:class:`tests.object_store.S3Server`)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    from tests.object_store import CREDENTIALS, S3Server

    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


def _postgres_admin() -> tuple[Any, str]:
    """An engine on the server of ``DEEPROOTS_TEST_POSTGRES`` and the URL, or a skip saying why."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: {POSTGRES_ENV} is not set (.ci/run sets it; see README)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install -e '.[test]')")
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            c.execute(sa.text("select 1"))
    except sa.exc.OperationalError as e:
        pytest.skip(f"the PostgreSQL server at {POSTGRES_ENV} does not answer: {str(e.orig).strip().splitlines()[0]}")
    return engine, url


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty PostgreSQL database (dropped after the test)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    engine, url = _postgres_admin()
    name = f"deeproots_test_{uuid.uuid4().hex[:10]}"
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which PostgreSQL server the PostgreSQL tests use (its version), or why they skip."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return [f"PostgreSQL: {POSTGRES_ENV} not set -- the PostgreSQL tests skip"]
    try:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as c:
            version = c.execute(sa.text("select version()")).scalar_one()
        engine.dispose()
        return [f"PostgreSQL: {version} at {make_url(url).render_as_string(hide_password=True)}"]
    except Exception as e:  # noqa: BLE001 (a header line, never a failure)
        return [f"PostgreSQL: {url.split('@')[-1]} does not answer ({type(e).__name__}) -- the PostgreSQL tests skip"]
