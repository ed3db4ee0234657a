"""The one exception tree of hptune.

Everything hptune raises on purpose derives from :class:`HptuneError`; the CLI maps each
branch to an exit code. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class HptuneError(Exception):
    """Base class of every error hptune raises deliberately."""


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One problem found in an experiment file, located as precisely as we can."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        # Line 0: not in a file but on the command line (``--set key``, named in ``file``).
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True, order=True)
class SpecWarning(SpecIssue):
    """Something in an experiment that is probably a mistake but does not stop a run (an
    identifier column that would be one-hot encoded, a likely typo passed to ``**kwargs``)."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: warning: {self.message}" if self.path else f"{where}: warning: {self.message}"


class SpecError(HptuneError):
    """Raised when an experiment file is invalid; carries every issue found, sorted by line."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(issue) for issue in self.issues))


class DataError(HptuneError):
    """Raised when the data named by an experiment cannot be loaded or used."""


class StorageError(HptuneError):
    """Raised when the study's storage cannot be opened: a bad or unreachable database URL,
    or a missing database driver."""


class RunFailedError(HptuneError):
    """Raised when a run finished but failed: every trial failed, or too many did.

    ``result`` holds what was written from the trials that did complete, if anything.
    """

    result: object | None = None


class StudyMismatchError(HptuneError):
    """Raised when an output folder holds a study that must not be continued (a different
    experiment, or any study when the user asked not to resume)."""


class RunInterruptedError(HptuneError):
    """Raised after a run was stopped by Ctrl-C or SIGTERM and what was complete was saved."""

    result: object | None = None


class UsageError(HptuneError):
    """Raised when options are given together that must not be (e.g. --fresh with --worker)."""
