"""Every command in the README's examples block runs and writes its output (golden CLI test)."""

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
    """Repository-relative input paths made absolute (the command runs in a scratch folder)."""
    for prefix, root in (("sample_data/", REPO / "sample_data"), ("../shared/data/", shared_data_dir())):
        if token.startswith(prefix):
            path, sep, internal = token[len(prefix):].partition(":")
            target = root / path
            if not target.exists():
                pytest.skip(f"{token} not available here")
            return str(target) + sep + internal
    return token


def test_the_examples_cover_every_subcommand():
    used = {shlex.split(c)[1] for c in COMMANDS}
    assert {"info", "generate", "solve", "complete", "sketch-regress", "factorize"} <= used


def run_process(args: list[str]) -> CliResult:
    """Run ``python -m matcli <args>`` as its own process in the current folder."""
    proc = subprocess.run([sys.executable, "-m", "matcli", *args], capture_output=True, text=True,
                          cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": str(REPO)})
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_example_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "big_regression.h5" in command and "generate" not in command:
        # the streaming example reads the generated file of the example before it
        assert run_cli(["generate", "regression", "--rows", "250000", "--cols", "50", "--cond", "1e6",
                        "--noise", "1e-2", "-o", "big_regression.h5"]).exit_code == 0
    args = [localise(token) for token in shlex.split(command)[1:]]
    # --max-memory bounds the whole process, so such examples run in a process of their own, as a
    # user's would (not inside pytest's)
    result = run_process(args) if "--max-memory" in args else run_cli(args)
    assert result.exit_code == 0, result.stderr
    for flag in ("-o", "--report", "--predictions-out"):
        if flag in args:
            assert (tmp_path / args[args.index(flag) + 1]).is_file()


def test_the_streaming_example_streams_within_its_budget(tmp_path, monkeypatch):
    """The README's --max-memory example: the file (100 MB) is streamed and the process's measured peak
    stays within the 150M budget."""
    import json

    monkeypatch.chdir(tmp_path)
    command = next(c for c in COMMANDS if "--max-memory" in c)
    generate = next(c for c in COMMANDS if "generate regression" in c)
    assert run_cli(shlex.split(generate)[1:]).exit_code == 0
    result = run_process(shlex.split(command)[1:])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "stream.json").read_text())
    assert report["problem"]["streaming"] and report["info"]["passes_over_file"] > 2
    assert report["peak_memory_bytes"] <= 150 * 2**20
