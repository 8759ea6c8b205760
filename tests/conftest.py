"""Shared test fixtures: where the real data lives and a CLI runner that reports exit codes."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_DATA = Path(__file__).resolve().parent / "data"


def shared_data_dir() -> Path:
    """The real-data folder: $MATCLI_SHARED_DATA, else ../shared/data beside the checkout, else the
    subset bundled in tests/data (same layout and MANIFEST.tsv format) so the suite stands alone."""
    for candidate in (os.environ.get("MATCLI_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate, "MANIFEST.tsv").is_file():
            return Path(candidate)
    return BUNDLED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data (matrices/, ml-100k/, format-variants/)."""
    return shared_data_dir()


def data_file(relative: str) -> Path:
    """A file under the data root; skips the test when this data root lacks it."""
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(f"{relative} not in {shared_data_dir()}")
    return path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(args: list[str]) -> CliResult:
    """Run ``matcli <args>`` in-process through the real entry point (exception -> exit code mapping)."""
    from matcli.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """The :func:`run_cli` helper as a fixture."""
    return run_cli


def solve_outputs(cli, tmp_path: Path, args: list) -> tuple[CliResult, dict | None, object]:
    """``matcli solve <args> -o x.h5 --report r.json --quiet --force`` in ``tmp_path``; returns the
    result, the report (None when none was written) and x (None when no output was written)."""
    import json

    import h5py

    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", *args, "-o", out, "--report", rep, "--quiet", "--force"])
    report = json.loads(rep.read_text()) if rep.exists() else None
    x = None
    if out.exists():
        with h5py.File(out, "r") as fh:
            x = fh["x"][()] if "x" in fh else None
    return result, report, x


@pytest.fixture(autouse=True)
def _reports_follow_the_schema(monkeypatch):
    """Every report a test writes satisfies matcli/report.schema.json (the published contract)."""
    import jsonschema

    import matcli.report as report_module

    validator = jsonschema.Draft202012Validator(report_module.load_schema())
    emit = report_module.emit_report

    def checked(destination, report, *, force):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
        assert not errors, errors
        emit(destination, report, force=force)

    monkeypatch.setattr(report_module, "emit_report", checked)
