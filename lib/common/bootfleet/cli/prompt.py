"""Asking before a destructive command: yes on a terminal, --yes anywhere else."""

from __future__ import annotations

import sys

from bootfleet.cli.client import CliError


def confirm(args, question: str) -> None:
    """Go on if --yes was given or the operator answers y; raise CliError otherwise. Without a
    terminal to ask on (a script, CI), --yes is required: nothing is deleted by accident."""
    if getattr(args, "yes", False):
        return
    if not sys.stdin.isatty():
        raise CliError(f"{question.rstrip('?')}: not confirmed; add --yes to do it without asking")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    if answer not in ("y", "yes"):
        raise CliError("cancelled")
