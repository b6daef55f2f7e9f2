"""Reading `python -X importtime` output: which modules a command imported, and what else it
printed on stderr (the tests that check a command answers without importing TensorFlow)."""

from __future__ import annotations

PREFIX = "import time:"


def imported(stderr: str) -> set[str]:
    """The modules `-X importtime` reported (one per 'import time:' line)."""
    return {ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines() if ln.startswith(PREFIX)}


def other_lines(stderr: str) -> list[str]:
    """stderr without the importtime lines: what the command itself printed."""
    return [ln for ln in stderr.splitlines() if not ln.startswith(PREFIX)]
