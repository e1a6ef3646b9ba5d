"""Operator commands (`herald jobs ...`, `herald stats`, `herald metrics serve`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the operator commands on the `herald` parser."""
