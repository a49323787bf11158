"""An anomaly's severities and their order, defined once.

SQL orders them with `severity_rank(text)` (migration 0007), which tests/test_one_home.py holds
to this order; the API's `severity` values and the rules file's levels are these names.
"""

from __future__ import annotations

from typing import Literal, get_args

Severity = Literal["low", "medium", "high"]

LOWEST_FIRST: tuple[Severity, ...] = get_args(Severity)
HIGHEST_FIRST: tuple[Severity, ...] = LOWEST_FIRST[::-1]
LOWEST: Severity = LOWEST_FIRST[0]


def rank(severity: str) -> int:
    """1 for the lowest, as `severity_rank()` in SQL; ValueError for an unknown name."""
    return LOWEST_FIRST.index(severity) + 1


def higher(a: str, b: str) -> str:
    return a if rank(a) >= rank(b) else b


def one_up(severity: Severity) -> Severity:
    """The next severity up; the highest stays the highest."""
    return LOWEST_FIRST[min(rank(severity), len(LOWEST_FIRST) - 1)]
