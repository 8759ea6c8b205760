"""Exception hierarchy. Each class carries the process exit code the CLI maps it to.

Only ``matcli.cli.app`` turns these into exit codes and one-line messages; every other
layer raises them and never prints.
"""

from __future__ import annotations


class MatcliError(Exception):
    """Base class of every error matcli reports to the user (exit code 1 = internal)."""

    exit_code = 1


class UsageError(MatcliError):
    """Bad combination of options or parameters (exit code 2)."""

    exit_code = 2


class NotConvergedError(MatcliError):
    """Raised by the runner only under ``--strict`` when the status is negative (exit code 3)."""

    exit_code = 3


class InputError(MatcliError):
    """Unreadable, malformed or inconsistent input (exit code 4).

    The message always starts with the offending file so the one-line error names it.
    """

    exit_code = 4

    def __init__(self, path: object, defect: str):
        self.path = str(path)
        self.defect = defect
        super().__init__(f"{self.path}: {defect}")


class OutputError(MatcliError):
    """The output cannot be written: exists without --force, is an input, or I/O failed (exit code 5)."""

    exit_code = 5

    def __init__(self, path: object, defect: str):
        self.path = str(path)
        self.defect = defect
        super().__init__(f"{self.path}: {defect}")


class BackendError(MatcliError):
    """The execution backend (e.g. Dask) is unavailable or failed (exit code 6)."""

    exit_code = 6


class ResourceError(MatcliError):
    """The run would need more memory than the budget allows, or the machine ran out (exit code 7).

    Raised before allocating when an input's declared sizes do not fit ``--max-memory``, and by the
    CLI for a :class:`MemoryError` during the work. The message names the file when one is to blame.
    """

    exit_code = 7

    def __init__(self, path: object | None, defect: str):
        self.path = None if path is None else str(path)
        self.defect = defect
        super().__init__(f"{self.path}: {defect}" if self.path else defect)


class NotSPDError(MatcliError):
    """A method that needs a symmetric positive definite matrix was given one that is not.

    Kernels raise it; the runner converts it into a negative status or an input error with a
    suggestion of a method that fits.
    """

    exit_code = 4
