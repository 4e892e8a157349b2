"""Where data sets are found and cached, and how a cache file is written safely."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["default_cache_dir", "DATA_ENV"]


def default_cache_dir() -> Path:
    """Return the folder that holds downloads and decoded tensor caches.

    ``$DEEPROOTS_CACHE`` when set, else ``$XDG_CACHE_HOME/deeproots``, else ``~/.cache/deeproots``.

    Example:
        >>> from deeproots.data import default_cache_dir
        >>> default_cache_dir().name
        'deeproots'
    """
    if env := os.environ.get("DEEPROOTS_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "deeproots"


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # mkstemp makes it private; a cache is for every user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Environment variable naming a folder that holds ``cifar-10-batches-py`` or an ImageFolder root
#: (``train/`` and ``val/``); used when ``load_data`` is given no root.
DATA_ENV = "DEEPROOTS_DATA"


def env_data_root() -> Path | None:
    """``$DEEPROOTS_DATA`` as a path, or None when unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cached_file_facts(
    path: Path, kind: str, compute: Callable[[Path], dict[str, Any]], cache_dir: Path
) -> dict[str, Any]:
    """``compute(path)`` -- facts about one file (its checksum, its image count) -- cached by size and mtime.

    The cache is one small JSON file, ``<cache_dir>/file-facts.json``, keyed by ``kind`` and the
    resolved path; an entry whose file's size or modification time changed is computed again.
    ``compute`` may raise (a damaged file); nothing is cached then.
    """
    st = path.stat()
    key = f"{kind}:{path.resolve()}"
    store = cache_dir / "file-facts.json"
    try:
        entries = json.loads(store.read_text())
    except (OSError, ValueError):
        entries = {}
    entry = entries.get(key) if isinstance(entries, dict) else None
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return entry["facts"]
    facts = compute(path)
    if not isinstance(entries, dict):
        entries = {}
    entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "facts": facts}
    try:
        _write_text_atomic(store, json.dumps(entries, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs the recomputation next time
    return facts


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
