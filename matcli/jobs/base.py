"""The contract between :mod:`matcli.runner` and a family adapter.

The runner owns the order of phases, their timing, the seed, the output checks, atomic
writing and the report. An adapter owns what differs between subcommands: which inputs to
read, what a valid problem is, how ``auto`` picks a method, and how to call the kernel.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matcli.backends import Backend
from matcli.backends.local import LocalBackend
from matcli.core.result import Callback, Result

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class JobRequest:
    """Everything a subcommand parsed from its command line; frozen so phases cannot change it.

    ``options`` is the family's options dataclass (:mod:`matcli.jobs.options`: ``SolveOptions`` ...);
    the fields here are the options every family shares. ``params`` are the raw ``--param key=value``
    strings; ``plot`` is the ``--plot`` PNG path.
    """

    family: str
    method: str
    inputs: tuple[str, ...]
    output: str | None
    options: Any = None
    params: tuple[str, ...] = ()
    seed: int | None = None
    report: str | None = None
    plot: str | None = None
    force: bool = False
    strict: bool = False
    quiet: bool = False
    monitor: bool = False
    threads: int | None = None
    backend: str = "local"
    scheduler: str | None = None
    output_format: str | None = None
    max_memory: str | None = None
    allow_external_links: bool = False
    command_line: tuple[str, ...] = ()


class FamilyJob(abc.ABC):
    """Base class of the per-family adapters in ``matcli/jobs/<family>.py``.

    Subclasses implement the five phase methods. They raise :class:`~matcli.core.errors.InputError`
    (naming the file) for bad input and :class:`~matcli.core.errors.UsageError` for bad options.
    After :meth:`setup`, ``self.method`` / ``self.resolved_params`` / ``self.choice_reason``
    describe what will run; the report shows them. ``self.backend`` runs independent tasks:
    local until the runner opens the requested backend before :meth:`setup`.
    """

    family: str = ""

    def __init__(self, request: JobRequest):
        self.request = request
        self.method: str = request.method
        self.resolved_params: dict[str, Any] = {}
        self.choice_reason: str = ""
        self.problem_info: dict[str, Any] = {}
        self.backend: Backend = LocalBackend()

    def input_paths(self) -> list[str]:
        """Filesystem paths this job reads (the runner refuses to write over any of them)."""
        from matcli.io.spec import parse_spec

        return [parse_spec(s).path for s in self.request.inputs]

    def side_outputs(self) -> dict[str, str]:
        """Files written beside the main output, ``{flag: path}`` (``--plot``, ``--predictions-out``).

        The runner checks them with ``-o`` and ``--report`` under one output policy before any work.
        """
        return {}

    def stdout_formats(self) -> dict[str, str]:
        """``{flag: format}`` of side outputs that may go to standard output (``-``); none by default."""
        return {}

    def output_arrays(self) -> tuple[str, ...] | None:
        """Arrays ``-o`` will hold (at least), when the options alone decide them (None otherwise).

        The runner uses them to refuse, before any work, a MatrixMarket output (one matrix) for a
        result of several arrays; where they are unknown, the writer refuses at the end instead.
        """
        return None

    def output_attributes(self, result: Result) -> dict[str, Any]:
        """Attributes the output file states about itself beside the runner's (method, params,
        status ...): e.g. a completion model's prediction formula, a factorization's permutation
        convention. Default: none."""
        return {}

    def draw(self, ax, result: Result) -> str:
        """``--plot``: draw this family's figure of ``result`` on the matplotlib axes ``ax`` (from the
        result alone, nothing recomputed) and return its title. The runner writes the file."""
        raise NotImplementedError(f"{self.family} has no --plot")

    @abc.abstractmethod
    def read(self) -> None:
        """Phase `read` (timed by the runner)."""

    @abc.abstractmethod
    def validate(self) -> None:
        """Phase `validate` (timed by the runner)."""

    @abc.abstractmethod
    def setup(self, rng: np.random.Generator) -> None:
        """Phase `setup` (timed by the runner)."""

    @abc.abstractmethod
    def compute(self, callback: Callback) -> Result:
        """Phase `compute` (timed by the runner)."""

    def write_extra(self, result: Result) -> dict[str, str]:
        """Write side outputs other than the main output file (e.g. predictions, a plot).

        Returns ``{label: path}`` of files written, for the report. Default: none.
        """
        return {}
