"""The backtest's result per rule and day, as a plain-text table, a markdown table and JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sentinelops_pipelines.backtest.incidents import Difference, Incident

COLUMNS = ("stored", "current", "candidate", "new", "gone", "changed")
# The text output lists the differences themselves up to here; --json has all of them.
DIFFERENCES_SHOWN = 30


@dataclass(frozen=True)
class Row:
    """One rule on one UTC day (day None: the rule's total over the range)."""

    rule: str
    day: date | None
    stored: int = 0  # anomalies in the anomalies table (what really happened)
    current: int = 0  # incidents the active rules raise over these windows
    candidate: int = 0  # incidents the candidate raises
    new: int = 0  # candidate incidents no current incident overlaps
    gone: int = 0  # current incidents no candidate incident overlaps
    changed: int = 0  # candidate incidents whose severity differs from the current ones'

    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, c) for c in COLUMNS)


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    current_rules: str
    candidate_rules: str
    windows: int
    seconds: float
    rows: list[Row]
    differences: list[Difference] = field(repr=False)

    def changes(self) -> list[Difference]:
        return [d for d in self.differences if d.verdict != "same"]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "current_rules": self.current_rules,
            "candidate_rules": self.candidate_rules,
            "windows": self.windows,
            "seconds": round(self.seconds, 2),
            "rows": [
                {"rule": r.rule, "day": r.day.isoformat() if r.day else "total"}
                | dict(zip(COLUMNS, r.counts(), strict=True))
                for r in self.rows
            ],
            "differences": [
                {"verdict": d.verdict, "rule": d.rule, "scope": d.scope,
                 "start": d.start.isoformat(), "end": d.end.isoformat(),
                 "current": d.current, "candidate": d.candidate}
                for d in self.changes()
            ],
        }  # fmt: skip


def tabulate(
    rules: Iterable[str],
    stored: dict[tuple[str, date], int],
    current: list[Incident],
    candidate: list[Incident],
    differences: list[Difference],
) -> list[Row]:
    """Per rule (in the order given, then any other with stored anomalies) its days with
    anything to show, then its total row, which every rule gets."""
    tally: Counter[tuple[str, date, str]] = Counter()
    for (rule, day), n in stored.items():
        tally[rule, day, "stored"] += n
    for column, incidents in (("current", current), ("candidate", candidate)):
        for inc in incidents:
            tally[inc.rule, inc.day, column] += 1
    for d in differences:
        if d.verdict != "same":
            tally[d.rule, d.day, d.verdict] += 1
    order = list(dict.fromkeys([*rules, *sorted({rule for rule, _ in stored})]))
    rows = []
    for rule in order:
        days = sorted({day for r, day, _ in tally if r == rule})
        day_rows = [Row(rule, day, **{c: tally[rule, day, c] for c in COLUMNS}) for day in days]
        total = {c: sum(getattr(r, c) for r in day_rows) for c in COLUMNS}
        rows += [*day_rows, Row(rule, None, **total)]
    return rows


def _cells(row: Row) -> list[str]:
    return [row.rule, row.day.isoformat() if row.day else "total", *map(str, row.counts())]


def render_table(rows: list[Row]) -> str:
    """The rows as aligned plain text, a blank line between rules."""
    header = ["rule", "day", *COLUMNS]
    table = [header, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths, strict=False)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    out = [line(header)]
    for row in rows:
        out.append(line(_cells(row)))
        if row.day is None:
            out.append("")
    return "\n".join(out).rstrip()


def render_markdown(rows: list[Row]) -> str:
    header = ["rule", "day", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * 2 + " ---: |" * len(COLUMNS)]
    for row in rows:
        cells = _cells(row)
        if row.day is None:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _severity_change(d: Difference) -> str:
    return {"new": f"new {d.candidate}", "gone": f"gone {d.current}"}.get(
        d.verdict, f"changed {d.current}->{d.candidate}"
    )


def render_differences(differences: list[Difference], limit: int = DIFFERENCES_SHOWN) -> str:
    """One line per new, gone or changed incident, the first `limit` of them."""
    if not differences:
        return "No difference: the candidate raises the same incidents as the current rules."
    lines = [
        f"{d.start:%Y-%m-%d %H:%M}-{d.end:%H:%M}  {d.rule}  {d.scope}  {_severity_change(d)}"
        for d in differences[:limit]
    ]
    more = len(differences) - limit
    head = f"Differences ({len(differences)}" + (f", first {limit} shown" if more > 0 else "")
    return "\n".join([head + "):", *(f"  {x}" for x in lines)])


def render_text(report: Report) -> str:
    head = (
        f"Backtest of {report.candidate_rules} against {report.current_rules}"
        f" over {report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC"
        f" ({report.windows} stored windows, {report.seconds:.1f} s)\n"
        "stored: anomalies recorded; current, candidate: incidents each rules file raises over"
        " these windows; new, gone, changed: the candidate against the current rules (by the"
        " day each incident starts, UTC)"
    )
    return "\n\n".join([head, render_table(report.rows), render_differences(report.changes())])
