"""A study's storage URL: built from a path, checked, and looked into without changing it.

Every command line (``search.run``, ``search.export``, ``search.confirm``, ``search.fidelity``)
checks a storage URL here before anything opens it, so a bad one is one line naming what is wrong:

* a URL SQLAlchemy cannot parse, an in-memory SQLite database (Ray workers and a resume cannot
  share it), a server backend whose driver is not installed (``pip install psycopg2-binary``);
* for a search (``create=True``): an SQLite file whose folder cannot be created;
* for a reader (:func:`check_study_storage`): a database that is not an Optuna study's -- looked into
  read-only, because Optuna's ``RDBStorage`` creates its tables in whatever database it is given.

An SQLite URL made from a path goes through :func:`sqlite_url`: a folder named ``a?b`` or ``50%``
must not turn into a query string or an escape.

Example:
    >>> sqlite_url("/tmp/a?b/study.db")
    'sqlite:////tmp/a%3Fb/study.db'
    >>> sqlite_path(sqlite_url("/tmp/a?b/study.db"))
    PosixPath('/tmp/a?b/study.db')
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

from ._trial_storage import folder_problem

__all__ = ["StorageError", "sqlite_url", "sqlite_path", "check_storage_url", "check_study_storage", "storage_tables"]

_FORMS = "sqlite:///path/to/study.db (four slashes for an absolute path: sqlite:////abs/study.db) or postgresql://user@host/db"
_DRIVERS = {"psycopg2": "psycopg2-binary", "pymysql": "pymysql", "MySQLdb": "mysqlclient", "psycopg": "psycopg[binary]"}


class StorageError(ValueError):
    """A storage URL that cannot be used: one line naming what is wrong and how to fix it."""


def sqlite_url(path: str | Path) -> str:
    """The SQLite URL of a database file, quoted so that it parses back to ``path`` (``?``, ``#``, ``%``)."""
    from sqlalchemy.engine import URL  # noqa: PLC0415

    return URL.create("sqlite", database=Path(path).as_posix()).render_as_string(hide_password=False)


def _parse(url: str):  # noqa: ANN202 (sqlalchemy.engine.URL, imported lazily)
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL {url!r} is empty; expected {_FORMS}")
    try:
        return make_url(url)
    except ArgumentError:
        raise StorageError(f"storage URL {url!r} is not an SQLAlchemy URL; expected {_FORMS}") from None


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None: another backend).

    Raises:
        StorageError: not an SQLAlchemy URL.
    """
    u = _parse(url)
    if u.get_backend_name() != "sqlite":
        return None
    return Path(u.database or "")


def _absolute_hint(path: Path) -> str:
    """A hint when a relative SQLite path looks like an absolute one missing its fourth slash."""
    if path.is_absolute():
        return ""
    absolute = Path("/") / path
    top = path.parts[0] if path.parts else ""
    looks_absolute = bool(top) and (Path("/") / top).is_dir() and not Path(top).exists()  # tmp/..., home/...
    if absolute.exists() or absolute.parent.is_dir() or looks_absolute:
        return f" (an absolute path needs four slashes: sqlite:///{absolute.as_posix()})"
    return ""


def check_storage_url(url: str, *, create: bool = False) -> str:
    """Check a storage URL before anything opens it; returns it unchanged.

    Args:
        url: SQLAlchemy URL.
        create: a search will create the database: its SQLite folder must be creatable.

    Raises:
        StorageError: unparsable, in-memory SQLite, a missing database driver, an SQLite folder that
            cannot be created (``create``) -- one line each.
    """
    u = _parse(url)
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if db in ("", ":memory:") or db.startswith("file::memory:") or u.query.get("mode") == "memory":
            raise StorageError(f"storage {url!r} is an in-memory SQLite database, which Ray's workers and a resume "
                               f"cannot share; give a file: sqlite:///runs/NAME/study.db")  # fmt: skip
        path = Path(db)
        if path.is_dir():
            raise StorageError(f"storage {url!r} names a folder ({path}), not a database file; e.g. {sqlite_url(path / 'study.db')}")
        if create:
            why = folder_problem(path.parent)
            if why:
                raise StorageError(f"storage {url!r}: the folder {path.parent} cannot be created: {why}{_absolute_hint(path)}")
        return url
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.exc import NoSuchModuleError  # noqa: PLC0415

    try:
        sa.create_engine(url).dispose()  # loads the dialect and its driver; connects to nothing
    except NoSuchModuleError:
        raise StorageError(f"storage {u.render_as_string()!r}: SQLAlchemy knows no backend {u.drivername!r}; expected {_FORMS}") from None
    except ImportError as e:
        module = (getattr(e, "name", None) or str(e)).split(".")[0]
        pkg = _DRIVERS.get(module, module)
        other = (" (or, for psycopg2: postgresql+psycopg2://... and pip install psycopg2-binary)"
                 if module == "psycopg" else "")  # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3
        raise StorageError(f"storage {u.render_as_string()!r} needs the database driver {module!r}: "
                           f"pip install {pkg}{other}") from None
    except Exception as e:  # noqa: BLE001 (any other driver error: one line)
        raise StorageError(f"storage {u.render_as_string()!r} cannot be used: {str(e).splitlines()[0]}") from None
    return url


def storage_tables(url: str) -> list[str] | None:
    """The tables of the database at ``url``, read without changing it (None: no such SQLite file).

    Raises:
        StorageError: the file is not an SQLite database, or the server cannot be reached.
    """
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            return None
        uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
        try:
            con = sqlite3.connect(uri, uri=True, timeout=60)
            try:
                rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            finally:
                con.close()
        except sqlite3.Error as e:
            raise StorageError(f"{path} is not a readable SQLite database ({e}); nothing was changed") from None
        return [r[0] for r in rows]
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return list(sa.inspect(engine).get_table_names())
    except Exception as e:  # noqa: BLE001 (driver errors: one line)
        raise StorageError(f"cannot open {_parse(url).render_as_string()}: {str(e).splitlines()[0]}") from None
    finally:
        engine.dispose()


_OPTUNA_TABLES = {"studies", "trials", "version_info"}
#: deeproots' own tables (the driver's lock, :mod:`search.engine._lock`), made before the study's.
_OWN_PREFIX = "deeproots_"


def check_study_storage(url: str, *, allow_empty: bool = False) -> bool:
    """Check that ``url`` is an Optuna storage before Optuna opens it (Optuna would add its tables to any database).

    Args:
        url: SQLAlchemy URL.
        allow_empty: a search: a missing SQLite file or a database without tables may become the study's,
            and so may a server database that holds other tables (Optuna's are added beside them).

    Returns:
        True: it holds Optuna's tables; False: missing or empty (only with ``allow_empty``).

    Raises:
        StorageError: no such database (a reader), or one whose tables are not Optuna's (a reader; a
            search given a SQLite file of another application) -- one line, the database unchanged.
    """
    check_storage_url(url)
    tables = storage_tables(url)
    if tables is None:
        if allow_empty:
            return False
        path = sqlite_path(url)
        raise StorageError(f"no study database at {path}{_absolute_hint(path) if path is not None else ''}")
    if _OPTUNA_TABLES <= set(tables):
        return True
    where = sqlite_path(url) or _parse(url).render_as_string()
    tables = [t for t in tables if not t.startswith(_OWN_PREFIX)]  # the driver's lock comes before the study
    if not tables or (allow_empty and sqlite_path(url) is None):
        # A server database (PostgreSQL, MySQL) is commonly shared with other schemas: a search may
        # add Optuna's tables beside them, as the user asked; a SQLite file is one application's.
        if allow_empty:
            return False
        raise StorageError(f"{where} holds no study (an empty database)")
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    raise StorageError(f"{where} is a database but not an Optuna study's (its tables: {shown}); nothing was changed -- "
                       f"give a study's database, or a new file for a new study")  # fmt: skip
