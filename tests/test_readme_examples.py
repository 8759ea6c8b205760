"""Every command in the README's examples block runs and writes its output (golden CLI test)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, shared_data_dir

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


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_example_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [localise(token) for token in shlex.split(command)[1:]]
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    for flag in ("-o", "--report", "--predictions-out"):
        if flag in args:
            assert (tmp_path / args[args.index(flag) + 1]).is_file()
