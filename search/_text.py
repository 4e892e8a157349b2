"""Small text helpers shared by the console output of every part of ``search``."""

from __future__ import annotations

import math
import re

__all__ = ["format_count", "one_line", "duration"]


def format_count(n: float | None) -> str:
    """1234567 -> '1.23M' (FLOPs, params); None or nan -> '-'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def one_line(text: str, limit: int = 300) -> str:
    """The informative line of an error text (``SomeError: message``), shortened to ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    pattern = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*")
    hits = [ln for ln in lines if pattern.match(ln)]
    line = hits[-1] if hits else (lines[-1] if lines else "unknown error")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def duration(seconds: float) -> str:
    """42 -> '42 s', 600 -> '10.0 min', 7200 -> '2.0 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def os_error_line(e: OSError) -> str:
    """An ``OSError`` as one line naming the file: ``/proc/x: No such file or directory``."""
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    reason = e.strerror or one_line(str(e)) or type(e).__name__
    return f"{' -> '.join(names)}: {reason}" if names else reason
