"""Where decoded data sets are cached, and how a cache file is written safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["default_cache_dir"]


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
