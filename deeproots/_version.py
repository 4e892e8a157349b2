"""Package version and provenance (STYLE 12: every result carries where it came from)."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("deeproots")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


@lru_cache(maxsize=1)
def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("-dirty" if dirty else "")


def provenance() -> dict[str, str | None]:
    """deeproots version, git revision (when run from a checkout), torch version, python, host."""
    import torch

    return {
        "deeproots": __version__,
        "git_revision": _git_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
