"""`herald --help` explains everything: every command, argument and flag has a help line,
and `herald --version` names the version."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from herald.cli.main import build_parser, main


def walk(parser: argparse.ArgumentParser, path: str = "herald") -> Iterator[tuple[str, object]]:
    """(where, action) for every action of the parser and of every subcommand, and
    (where, choice) for every subcommand (its help is the line in its parent's list)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", helps.get(name)
                yield from walk(sub, f"{path} {name}")
        else:
            yield f"{path} {'/'.join(action.option_strings) or action.dest}", action.help


def test_every_command_argument_and_flag_has_a_help_line() -> None:
    missing = [where for where, text in walk(build_parser()) if not text]
    assert missing == []


def test_the_walk_sees_the_commands() -> None:
    seen = {where for where, _ in walk(build_parser())}
    for command in ("herald demo", "herald check", "herald jobs retry", "herald metrics serve"):
        assert command in seen
    assert "herald jobs show id" in seen and "herald demo --force" in seen


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"herald {version('herald')}"
