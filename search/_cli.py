"""What the command lines of ``search`` share."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2.

    argparse prints the whole usage block above the message; a user who mistyped an option needs the
    message and where to read more (``--help``).
    """

    def error(self, message: str) -> NoReturn:  # noqa: D102 (argparse API)
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
