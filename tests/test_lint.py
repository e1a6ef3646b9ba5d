"""The code stays as ruff and mypy want it (rules in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(exe).exists() and not shutil.which(exe):
        pytest.fail(f"{name} is not installed (it is in the test extras)")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return tool("ruff", *args)


def test_ruff_finds_nothing_to_complain_about():
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_no_type_errors():
    result = tool("mypy", ".")
    assert result.returncode == 0, result.stdout + result.stderr
