"""One driver per study, enforced where the study lives: a lock row in the study's own database.

Only one process may write a search's study -- the driver. The rule is kept in the database that
holds the study (SQLite or any server SQLAlchemy speaks), in a table of ours with one row per study,
taken with a unique insert, so a second driver anywhere -- another run folder, another machine --
pointed at the same storage URL and study is refused with the host and PID holding it.

The holder refreshes its row's heartbeat (the database's clock) every :data:`HEARTBEAT_SECONDS`. A
row is taken over -- with a compare-and-swap on its token, so two newcomers never both win -- when
its driver is provably gone: on this host, its PID no longer runs (or runs another program: the
process start time differs); on any host, its heartbeat is older than :data:`LOCK_STALE_SECONDS`.
A driver that finds its row taken over (its heartbeat update touches no row) has lost the study and
must stop.

Example:
    >>> lock = StudyLock.acquire("sqlite:///runs/nin/study.db", "nin")  # doctest: +SKIP
    >>> lock.beat()  # doctest: +SKIP
    True
    >>> lock.release()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from ..space._schema import SpaceError

__all__ = ["StudyLock", "LockHolder", "HEARTBEAT_SECONDS", "LOCK_STALE_SECONDS", "TABLE"]

#: Seconds between two heartbeats of the driver (its lock row, and Optuna's heartbeat of its running trials).
HEARTBEAT_SECONDS = 5
#: Seconds without a heartbeat after which a lock held from another host is taken over (a driver on
#: this host is checked by its PID at once). Long: taking a live driver's study would be far worse
#: than waiting a minute.
LOCK_STALE_SECONDS = 60
#: The lock table (in the study's database).
TABLE = "deeproots_driver_lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a study: host, PID, the PID's start time (to tell a reused PID), when, last heartbeat."""

    host: str
    pid: int
    pid_started: str | None
    acquired: dt.datetime
    heartbeat: dt.datetime
    token: str

    def alive(self, now: dt.datetime, stale_seconds: float) -> bool:
        """Whether this holder may still be running (``now``: the database's clock)."""
        if self.host == socket.gethostname():
            return _pid_started(self.pid) == self.pid_started and _pid_running(self.pid)
        return (now - self.heartbeat).total_seconds() <= stale_seconds

    def describe(self, now: dt.datetime) -> str:
        """``pid 123 on host h (since ..., last heartbeat 3 s ago)``."""
        age = max(0.0, (now - self.heartbeat).total_seconds())
        return f"pid {self.pid} on host {self.host} (since {self.acquired:%Y-%m-%d %H:%M:%S}, last heartbeat {age:.0f} s ago)"


def _pid_started(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux: clock ticks since boot), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _table(metadata: Any) -> Any:
    import sqlalchemy as sa  # noqa: PLC0415

    return sa.Table(
        TABLE, metadata,
        sa.Column("study_name", sa.String(512), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("pid_started", sa.String(64)),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip


def _naive_utc(value: Any) -> dt.datetime:
    """A database timestamp as naive UTC (PostgreSQL returns aware values, SQLite naive UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


class StudyLock:
    """The lock of one study in one database, held by this process (see the module docstring)."""

    def __init__(self, engine: Any, table: Any, study_name: str, token: str, url: str) -> None:
        self._engine = engine
        self._table = table
        self.study_name = study_name
        self.token = token
        self.url = url
        #: Who held it before, when it was taken over from a driver that was gone (else None).
        self.took_over: str | None = None

    # ------------------------------------------------------------------ acquire
    @classmethod
    def acquire(cls, url: str, study_name: str, *, stale_seconds: float = LOCK_STALE_SECONDS) -> StudyLock:
        """Take the lock of ``study_name`` in the database at ``url`` (SQLAlchemy URL).

        Raises:
            SpaceError: another driver holds it -- one line naming the study, the storage (password
                hidden) and the holder's PID and host.
        """
        import sqlalchemy as sa  # noqa: PLC0415
        from sqlalchemy.engine import make_url  # noqa: PLC0415
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError  # noqa: PLC0415

        parsed = make_url(url)
        kwargs: dict[str, Any] = {"poolclass": sa.pool.NullPool}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 60}
        engine = sa.create_engine(url, **kwargs)
        table = _table(sa.MetaData())
        for attempt in range(3):  # two drivers may create the table at once: one of them retries
            try:
                table.create(engine, checkfirst=True)
                break
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == 2:
                    raise
        host, pid = socket.gethostname(), os.getpid()
        token = uuid.uuid4().hex
        row = {"study_name": study_name, "host": host, "pid": pid, "pid_started": _pid_started(pid), "token": token}
        lock = cls(engine, table, study_name, token, url)
        shown = parsed.render_as_string(hide_password=True)
        for _ in range(5):
            try:
                with engine.begin() as c:
                    c.execute(table.insert().values(**row, acquired_at=sa.func.now(), heartbeat_at=sa.func.now()))
                return lock
            except IntegrityError:
                pass
            holder, now = lock._holder()
            if holder is None:
                continue  # released meanwhile: insert again
            if holder.alive(now, stale_seconds):
                raise SpaceError(
                    "", f"study {study_name!r} in {shown} is being searched by another driver: {holder.describe(now)}; "
                        "wait for it to finish or stop it (a rerun resumes)",
                )  # fmt: skip
            with engine.begin() as c:  # compare-and-swap: only one newcomer replaces that token
                taken = c.execute(
                    table.update().where(table.c.study_name == study_name, table.c.token == holder.token)
                    .values(**row, acquired_at=sa.func.now(), heartbeat_at=sa.func.now())
                ).rowcount  # fmt: skip
            if taken == 1:
                lock.took_over = f"pid {holder.pid} on host {holder.host}"
                return lock
        raise SpaceError("", f"study {study_name!r} in {shown}: could not take its driver lock (other drivers keep racing for it)")

    def _holder(self) -> tuple[LockHolder | None, dt.datetime]:
        import sqlalchemy as sa  # noqa: PLC0415

        t = self._table
        with self._engine.connect() as c:
            now = _naive_utc(c.execute(sa.select(sa.func.now())).scalar_one())
            r = c.execute(sa.select(t).where(t.c.study_name == self.study_name)).mappings().first()
        if r is None:
            return None, now
        holder = LockHolder(r["host"], int(r["pid"]), r["pid_started"], _naive_utc(r["acquired_at"]),
                            _naive_utc(r["heartbeat_at"]), r["token"])  # fmt: skip
        return holder, now

    def holder(self) -> LockHolder | None:
        """Who holds the study now (None: nobody)."""
        return self._holder()[0]

    # ------------------------------------------------------------------ hold
    def beat(self) -> bool:
        """Refresh the heartbeat; False when the lock was taken over (this driver must stop)."""
        import sqlalchemy as sa  # noqa: PLC0415

        t = self._table
        with self._engine.begin() as c:
            n = c.execute(
                t.update().where(t.c.study_name == self.study_name, t.c.token == self.token).values(heartbeat_at=sa.func.now())
            ).rowcount  # fmt: skip
        return n == 1

    def release(self) -> None:
        """Give the study up (nothing happens when it was taken over meanwhile)."""
        t = self._table
        try:
            with self._engine.begin() as c:
                c.execute(t.delete().where(t.c.study_name == self.study_name, t.c.token == self.token))
        finally:
            self._engine.dispose()
