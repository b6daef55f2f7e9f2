"""argparse types the benchmarks share, so a hostile value is refused in one usage line (exit 2)
before anything is built or started.

A benchmark that took `--rounds 0` or `--duration nan` used to end in a ZeroDivisionError or a
median of nothing after minutes of set-up, or, worse, run and print figures of nothing. Each type
here is a function argparse calls with the raw text; its ArgumentTypeError message becomes
`<script>: error: argument --flag: <message>`.

It lives in bench/, not in a project package, because several benchmarks run their own file
again with PYTHONPATH pointing at another checkout (`--against REF`): a script's sys.path starts
at bench/, so this module always comes from the benchmark's own tree, whatever the code measured.
The leading underscore marks it as a helper, not a benchmark (tests/bench/test_scripts.py).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _bounds(low: int, high: int | None) -> str:
    return f"at least {low}" if high is None else f"between {low} and {high}"


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """One whole number in [low, high] (high None: no upper bound)."""

    def parse(text: str) -> int:
        value = _whole(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got {value}")
        return value

    return parse


def wholes(low: int, high: int | None = None) -> Callable[[str], list[int]]:
    """Comma-separated whole numbers, each in [low, high], at least one."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers like 1,8,32, got {text!r}"
            ) from None
        bad = [v for v in values if v < low or (high is not None and v > high)]
        if bad:
            raise argparse.ArgumentTypeError(f"each must be {_bounds(low, high)}, got {bad}")
        return values

    return parse


row_counts = wholes(1)  # --rows 100000,1000000


def seconds(allow_zero: bool = False) -> Callable[[str], float]:
    """A finite number of seconds, above zero (or at least zero): nan and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            floor = "0 or more" if allow_zero else "above 0"
            raise argparse.ArgumentTypeError(f"must be a finite number {floor}, got {text!r}")
        return value

    return parse


def fraction(text: str) -> float:
    """A share of rows: a finite number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.005, got {text!r}") from None
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text!r}")
    return value


def names(choices: Iterable[str], allow_empty: bool = False) -> Callable[[str], list[str]]:
    """Comma-separated names, each one of `choices` (allow_empty: "" means none given)."""
    known = tuple(choices)

    def parse(text: str) -> list[str]:
        if allow_empty and not text.strip():
            return []
        values = [v.strip() for v in text.split(",")]
        unknown = [v for v in values if v not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(known)}")
        return values

    return parse


def cpus(text: str) -> list[int]:
    """CPU numbers this machine has, e.g. 1 or 0,1 (for sched_setaffinity / taskset)."""
    return wholes(0, (os.cpu_count() or 1) - 1)(text)
