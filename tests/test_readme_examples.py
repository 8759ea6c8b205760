"""Every command in the README's examples block runs, writes its output and converges (golden CLI test).

Exit code 0 alone proves little: a solve that stagnates still exits 0 without --strict. So every
output that carries a status (the HDF5 ``status`` / ``converged`` attributes) and every report
must say converged, and a --monitor example must print iteration 0 with the residual named.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO, CliResult, run_cli, shared_data_dir

START, END = "<!-- examples:start -->", "<!-- examples:end -->"


def readme_commands() -> list[str]:
    """The ``matcli`` command lines of the examples block, continuation lines joined."""
    text = (REPO / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        line = line.strip()
        if current:
            current += " " + line.rstrip("\\").strip()
        elif line.startswith(".venv/bin/matcli"):
            current = line.rstrip("\\").strip()
        if current and not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


COMMANDS = readme_commands()


def localise(token: str) -> str:
    """Repository-relative input paths made absolute (the command runs in a scratch folder), each of
    a comma-separated pair of specs too (``--update-lowrank X_spec,Y_spec``)."""
    if "," in token and token.startswith(("sample_data/", "../shared/data/")):
        return ",".join(localise(part) for part in token.split(","))
    for prefix, root in (("sample_data/", REPO / "sample_data"), ("../shared/data/", shared_data_dir())):
        if token.startswith(prefix):
            path, sep, internal = token[len(prefix):].partition(":")
            target = root / path
            if not target.exists():
                pytest.skip(f"{token} not available here")
            return str(target) + sep + internal
    return token


def test_the_examples_cover_every_subcommand():
    used = {shlex.split(c, comments=True)[1] for c in COMMANDS}
    assert {"info", "generate", "solve", "complete", "sketch-regress", "factorize", "predict"} <= used


def run_process(args: list[str]) -> CliResult:
    """Run ``python -m matcli <args>`` as its own process in the current folder."""
    proc = subprocess.run([sys.executable, "-m", "matcli", *args], capture_output=True, text=True,
                          cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": str(REPO)})
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


#: Subcommands whose example output a later example reads (a generated matrix, a completion model,
#: the SVD an update starts from).
PRODUCERS = ("generate", "complete", "factorize")


def generators_of(command: str) -> list[str]:
    """The ``matcli generate`` / ``complete`` examples before ``command`` whose output file it reads
    (as an argument or an option value, ``file.h5:/dataset`` included)."""
    read = {token.split(":", 1)[0] for token in shlex.split(command, comments=True)[1:]}
    found = []
    for earlier in COMMANDS[:COMMANDS.index(command)]:
        tokens = shlex.split(earlier, comments=True)
        if tokens[1] in PRODUCERS and tokens[tokens.index("-o") + 1] in read - {"-o"}:
            found.append(earlier)
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_example_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for generator in generators_of(command):  # e.g. the streaming example's generated file, predict's model
        assert run_cli([localise(token) for token in shlex.split(generator, comments=True)[1:]]).exit_code == 0
    args = [localise(token) for token in shlex.split(command, comments=True)[1:]]
    # --max-memory bounds the whole process, so such examples run in a process of their own, as a
    # user's would (not inside pytest's)
    result = run_process(args) if "--max-memory" in args else run_cli(args)
    assert result.exit_code == 0, result.stderr
    for flag in ("-o", "--report", "--predictions-out"):
        if flag in args:
            assert (tmp_path / args[args.index(flag) + 1]).is_file()
    assert_converged(args, tmp_path)
    if "--monitor" in args:
        assert_monitor_lines(result.stderr)
    if "--max-memory" in args:
        # the streaming example's file (100 MB) is streamed; the measured peak stays within the budget
        import json

        from matcli.core.memory import parse_memory

        report = json.loads((tmp_path / args[args.index("--report") + 1]).read_text())
        assert report["problem"]["streaming"] and report["info"]["passes_over_file"] > 2
        assert report["peak_memory_bytes"] <= parse_memory(args[args.index("--max-memory") + 1])


#: Subcommands whose outputs are results of a method and carry its status.
SOLVING = ("solve", "complete", "sketch-regress", "factorize", "predict")


def assert_converged(args: list[str], folder) -> None:
    """The status written with the output (HDF5 attributes) and in the report is a converged one."""
    import json

    import h5py

    if args[0] not in SOLVING:
        return
    if "-o" in args and args[args.index("-o") + 1].endswith(".h5"):
        with h5py.File(folder / args[args.index("-o") + 1]) as fh:
            status, converged = fh.attrs["status"], bool(fh.attrs["converged"])
        assert converged, f"{' '.join(args)} wrote status {status}"
    if "--report" in args:
        status = json.loads((folder / args[args.index("--report") + 1]).read_text())["status"]
        assert status["converged"] and status["reason"].startswith("converged_"), status


def assert_monitor_lines(stderr: str) -> None:
    """--monitor's first line is iteration 0 (the initial residual) and every line names its residual."""
    lines = [line for line in stderr.splitlines() if line.startswith("iter ")]
    assert lines and lines[0].split()[:2] == ["iter", "0"], lines[:2]
    for line in lines:
        assert "true_rel_residual=" in line or "precond_rel_residual=" in line, line
