"""Where trials keep their files: Ray Tune's ``storage_path`` -- a local folder, NFS, ``s3://``, ``gs://``.

Trials report their checkpoints (:class:`search.engine.record.TrialFiles`) with
``ray.tune.report(..., checkpoint=...)``; Tune copies each one into its storage, from whichever node
the trial ran on. The study records every trial's latest checkpoint as a URI (``Attr.CHECKPOINT``),
so nothing assumes the driver's disk holds a worker's files: a rerun hands an interrupted trial its
checkpoint URI, and the export reads the final weights with ``ray.tune.Checkpoint`` from wherever
they are.

A storage location is given as one URI, as Ray and ``pyarrow.fs.FileSystem.from_uri`` read it:
``/mnt/nfs/deeproots`` (a path every node sees), ``s3://bucket/prefix``, ``gs://bucket/prefix``, with
``pyarrow``'s query parameters for endpoints (``s3://bucket/prefix?endpoint_override=host:9000&scheme=http``
for MinIO, Ceph or any S3-compatible server). The filesystem is built here from the URI and handed
to Tune as ``RunConfig(storage_path=<path on it>, storage_filesystem=<it>)``, so a URI with query
parameters works as it does for pyarrow. Credentials come from the environment of every node
(``AWS_ACCESS_KEY_ID`` ..., ``GOOGLE_APPLICATION_CREDENTIALS``); a URI carrying them is refused --
it would be written into the study with every checkpoint URI.

Checkpoints under the run folder are recorded relative to it (a run folder can be moved); any other
location as an absolute path or URI.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from deeproots._uri import is_uri, local_path, open_uri

from ..space._schema import SpaceError

if TYPE_CHECKING:
    from ray.tune import Checkpoint

__all__ = ["TrialStorage", "checkpoint_at", "resolve_checkpoint_uri"]

#: Query parameters that would put a secret into every recorded URI.
_SECRET_KEYS = ("access_key", "secret_key", "session_token", "credential", "password", "token")


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written in local ``folder`` (one phrase), or None when they can.

    Tried for real, since permission bits do not tell (root may "write" to ``/proc``; a read-only
    mount or a full quota says no only when written): the missing folders are made, a small file
    is written and deleted, and the folders made are removed again -- nothing is left behind.
    """
    made: list[Path] = []
    try:
        missing = folder
        while not missing.exists() and not missing.is_symlink() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        if missing.exists() and not missing.is_dir():
            return f"{missing} is a file, not a folder"
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".deeproots-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return None
    except OSError as e:
        return f"{e.filename or folder}: {e.strerror or type(e).__name__}"
    finally:
        for created in made:  # deepest first
            try:
                created.rmdir()
            except OSError:
                break


@dataclass(frozen=True)
class TrialStorage:
    """Ray Tune's storage for one search: what ``storage_path`` names, and checkpoint URIs in it.

    Attributes:
        uri: the location: an absolute local path, or a URI (query parameters kept).
        run_dir: the run folder (checkpoints under it are recorded relative to it).
    """

    uri: str
    run_dir: Path

    @classmethod
    def parse(cls, location: str | Path, run_dir: str | Path, key: str = "storage_path") -> TrialStorage:
        """Check ``location`` (a path, relative to the working directory, or a URI) without touching it.

        Raises:
            SpaceError: on ``key``: credentials in the URI, or a malformed URI.
        """
        text = str(location)
        if is_uri(text):
            parts = urlsplit(text)
            if parts.username or parts.password:
                raise SpaceError(key, f"{_hide(text)}: credentials in the URI would be recorded in the study with "
                                      "every checkpoint; give them in the environment of every node (AWS_ACCESS_KEY_ID ...)")  # fmt: skip
            secret = [k for k, _ in parse_qsl(parts.query) if any(s in k.lower() for s in _SECRET_KEYS)]
            if secret:
                raise SpaceError(key, f"{_hide(text)}: {secret[0]} in the URI would be recorded in the study with every "
                                      "checkpoint; give credentials in the environment of every node")  # fmt: skip
            if parts.scheme == "file":
                text = parts.path
            elif not parts.netloc and parts.scheme not in ("hdfs", "viewfs"):
                raise SpaceError(key, f"{text!r} names no bucket or host (e.g. s3://bucket/prefix)")
        if not is_uri(text):
            text = str(Path(text).expanduser().resolve())
        return cls(text, Path(run_dir))

    @property
    def is_local(self) -> bool:
        """A folder of this machine's file system (a local disk or a network file system mounted here)."""
        return not is_uri(self.uri)

    def filesystem(self) -> tuple[Any, str]:
        """``(pyarrow filesystem, path on it)`` of the location (made once).

        Raises:
            SpaceError: the filesystem cannot be made (an unknown scheme, S3 without a region...).
        """
        return self._filesystem

    @cached_property
    def _filesystem(self) -> tuple[Any, str]:
        if self.is_local:
            import pyarrow.fs  # noqa: PLC0415

            return pyarrow.fs.LocalFileSystem(), self.uri
        try:
            return open_uri(self.uri)
        except ValueError as e:
            raise SpaceError("storage_path", str(e)) from None

    def run_config(self) -> dict[str, Any]:
        """Keyword arguments of ``ray.tune.RunConfig``: ``storage_path`` and ``storage_filesystem``."""
        fs, path = self.filesystem()
        return {"storage_path": path, "storage_filesystem": fs}

    def check_writable(self) -> None:
        """Whether trials can write here, checked before the study is touched: a local folder is
        made and a small file written in it, then both removed again (:func:`folder_problem`);
        elsewhere a small file is written and deleted.

        Raises:
            SpaceError: on ``storage_path``, one line: the location cannot be written.
        """
        if self.is_local:
            problem = folder_problem(Path(self.uri))
            if problem:
                raise SpaceError("storage_path", f"cannot write to {self.uri}: {problem}; "
                                                 "name a folder this user may write (--storage-path)")  # fmt: skip
            return
        fs, path = self.filesystem()
        probe = f"{path.rstrip('/')}/.deeproots-write-test-{uuid.uuid4().hex[:8]}"
        try:
            fs.create_dir(path, recursive=True)
            with fs.open_output_stream(probe) as f:
                f.write(b"ok")
            fs.delete_file(probe)
        except Exception as e:  # noqa: BLE001 (pyarrow/boto errors of every kind: one line)
            raise SpaceError("storage_path", f"cannot write to {_hide(self.uri)}: {str(e).splitlines()[0]}; check that the "
                                             "bucket exists and that this machine's credentials (in its environment) "
                                             "may write there") from None  # fmt: skip

    def uri_of(self, fs_path: str) -> str:
        """The URI of ``fs_path``, a path on this location's filesystem (a checkpoint Tune persisted)."""
        if self.is_local:
            return fs_path
        parts = urlsplit(self.uri)
        _, root = self.filesystem()
        root = root.rstrip("/")
        if fs_path != root and not fs_path.startswith(root + "/"):
            raise ValueError(f"{fs_path} is not under the storage location {self.uri}")
        base = self.uri.split("?", 1)[0].rstrip("/")
        return base + fs_path[len(root):] + (f"?{parts.query}" if parts.query else "")

    def record(self, location: str) -> str:
        """How the study records ``location``: relative to the run folder when under it, else as is."""
        return record_location(location, self.run_dir)

    def describe(self) -> str:
        """One phrase for progress output."""
        return _hide(self.uri)


def record_location(location: str, run_dir: str | Path) -> str:
    """``location`` relative to ``run_dir`` when it is a local path under it, else unchanged."""
    if is_uri(location):
        return location
    root = Path(run_dir).resolve()
    try:
        return Path(location).resolve().relative_to(root).as_posix()
    except ValueError:
        return location


def resolve_checkpoint_uri(recorded: str, bases: Iterable[str | Path]) -> str | None:
    """A recorded checkpoint location as a URI or absolute path (relative ones: the first base holding it)."""
    if is_uri(recorded) or os.path.isabs(recorded):
        return recorded
    for base in bases:
        candidate = Path(base) / recorded
        if candidate.exists():
            return str(candidate.resolve())
    return None


def checkpoint_at(location: str) -> Checkpoint:
    """A ``ray.tune.Checkpoint`` for a checkpoint URI or absolute path (filesystem from the URI).

    Raises:
        ValueError: the filesystem cannot be opened.
    """
    import pyarrow.fs  # noqa: PLC0415
    from ray.tune import Checkpoint  # noqa: PLC0415

    local = local_path(location)
    if local is not None:
        return Checkpoint(local, filesystem=pyarrow.fs.LocalFileSystem())
    fs, path = open_uri(location)
    return Checkpoint(path, filesystem=fs)


def _hide(uri: str) -> str:
    """``uri`` without user info (never print a password)."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        return uri.replace(parts.netloc, host + (f":{parts.port}" if parts.port else ""), 1)
    return uri
