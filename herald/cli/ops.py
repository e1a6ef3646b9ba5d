"""The operator commands, registered on the `herald` parser: `herald jobs …`
(`herald.cli.jobs`), `herald stats` and `herald metrics serve` (`herald.cli.stats`)."""

from __future__ import annotations

import argparse

from herald.cli.jobs import add_jobs_commands
from herald.cli.stats import add_metrics_commands, add_stats_command


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the operator commands on the `herald` parser."""
    add_jobs_commands(sub)
    add_stats_command(sub)
    add_metrics_commands(sub)
