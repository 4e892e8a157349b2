"""Files named by URI -- a local path, ``file://``, ``s3://``, ``gs://``, ``hdfs://`` -- read through ``pyarrow.fs``.

An exported model may sit in an object store (a search whose trials kept their files in ``s3://``, an
export copied to a bucket); :func:`deeproots.load_exported` reads it there by URI. Query parameters are
``pyarrow.fs.FileSystem.from_uri``'s (``s3://bucket/key?endpoint_override=host:9000&scheme=http`` for an
S3-compatible server); credentials come from the environment (``AWS_ACCESS_KEY_ID`` ...), never from the
URI. ``pyarrow`` is imported only when a URI is given.

Example:
    >>> from deeproots._uri import is_uri, local_path
    >>> is_uri("s3://bucket/export/nin.yaml"), is_uri("runs/nin/export/nin.yaml"), is_uri("C:/x.yaml")
    (True, False, False)
    >>> local_path("file:///tmp/x.yaml")
    '/tmp/x.yaml'
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["is_uri", "local_path", "open_uri", "read_bytes", "sibling"]


def is_uri(location: str | Any) -> bool:
    """Whether ``location`` is a URI with a scheme (``s3://...``), not a plain path (``C:/...`` is a path)."""
    if not isinstance(location, str) or "://" not in location:
        return False
    scheme = location.split("://", 1)[0]
    return len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def local_path(location: str) -> str | None:
    """The local path a plain path or ``file://`` URI names; None for any other URI."""
    if not is_uri(location):
        return location
    parts = urlsplit(location)
    return parts.path if parts.scheme == "file" else None


def open_uri(uri: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path on it)`` for ``uri``.

    Raises:
        ValueError: a scheme pyarrow does not know, or a filesystem that cannot be reached (one line).
    """
    import pyarrow.fs  # noqa: PLC0415

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as e:  # noqa: BLE001 (pyarrow raises ArrowInvalid, OSError...: one line naming the URI)
        raise ValueError(f"cannot open {uri}: {str(e).splitlines()[0]}") from None


def read_bytes(uri: str) -> bytes:
    """The whole file at ``uri``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the filesystem cannot be opened.
    """
    import pyarrow.fs  # noqa: PLC0415

    fs, path = open_uri(uri)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        raise FileNotFoundError(f"no such file: {uri}")
    with fs.open_input_stream(path) as f:
        return f.readall()


def sibling(uri: str, name: str) -> str:
    """The URI of file ``name`` in the folder of ``uri`` (query parameters kept)."""
    parts = urlsplit(uri)
    path = posixpath.join(posixpath.dirname(parts.path), name)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
