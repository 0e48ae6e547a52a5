"""One kind of error for bad input: it names the file, the problem and the fix."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input that a user can fix.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file (or folder) at fault.
    problem : str
        What is wrong with it, in one sentence.
    fix : str
        What the user should do about it.
    """

    def __init__(self, path, problem: str, fix: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.problem}. Fix: {self.fix}."


class SetupError(InputError):
    """Bad setup rather than bad data: a missing tool or template, a config value.

    It would stop every subject alike, so a per-subject job ending on one is not recorded as
    that subject's failure (sfc.failures): the group stage waits until the setup is fixed
    instead of going on without everyone.
    """
