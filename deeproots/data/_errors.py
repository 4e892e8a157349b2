"""The one exception for data that cannot be used as it is."""

from __future__ import annotations

from typing import Any

__all__ = ["DataError"]


class DataError(ValueError):
    """The data cannot be used: absent (and no download possible), damaged, or too small for what is asked.

    Its message is one line that names the file or folder and how to fix it (``root=`` -- ``data.root``
    in a search space, ``--data-root`` on the command line --, the ``DEEPROOTS_DATA`` environment
    variable, a new download or copy). Retrying does not mend it: a search records it as the trial's
    failure reason and does not retry the schedule. A ``ValueError``, so callers that report bad input
    (exit status 2) report it too.

    Attributes:
        path: the file or folder at fault, when there is one.
        key: the :func:`deeproots.data.load_data` argument at fault (``"root"``: no usable data
            there, ``"val_size"``, ``"subset"``), when it is one -- a search space's ``data.<key>``.
    """

    def __init__(self, message: str, path: Any = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Ray workers)
        return (type(self), (str(self), self.path, self.key))
