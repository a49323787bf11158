"""What benchmarks/detection.py found: incidents matched to anomalies, false alarms, verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bench_support import table
from detection_looks import LookStats, summary_rows

from sentinelops.severity import LOWEST_FIRST, rank
from tests.merchant_incidents import Benign, Incident

SLACK = timedelta(minutes=30)
SEVERITIES = LOWEST_FIRST
MAX_LOUD_FALSE, MAX_FALSE = 1, 5  # per month: medium/high, and any severity
DEFINITIONS = """\
Definitions: an incident is found when an anomaly of its rule (and currency, for amounts)
overlaps its span +-30 min at or above the severity it needs (failure-type incidents need
medium, the others low). A false alarm is any anomaly, of any severity, that overlaps no
incident span +-30 min. "below data": the data cannot show the incident (reason given); it is
not scored. Targets per shape and month: every incident found, at most 1 medium/high false
alarm, at most 5 false alarms in total. "anomalies": how many anomalies of its rule overlap
the incident (more than 1: the incident was split). Early looks: incidents a look at a window
still open opened; "found early": before any of their windows closed breaching (a day's looks
run before its closed pass, so a look may reach an incident before an earlier window's closed
verdict does; in production that verdict comes first); "only unconfirmed": incidents whose
every window was a look's that its closed window did not confirm; for the incidents found
early, how many minutes before the close of the window looked at, and before the end of the
incident's first window that breached when closed (medians)."""


@dataclass(frozen=True)
class Anomaly:
    rule: str
    scope: str
    severity: str
    start: datetime
    end: datetime
    title: str
    id: int = 0


def _overlaps(a: Anomaly, start: datetime, end: datetime) -> bool:
    return a.start <= end + SLACK and a.end >= start - SLACK


def _of(a: Anomaly, i: Incident) -> bool:
    return a.rule == i.rule and (i.scope is None or a.scope == i.scope)


@dataclass
class Score:
    shape: str
    incidents: list[tuple[Incident, str | None]]  # with the best matching severity
    false: list[Anomaly]
    benign: list[Benign]
    timings: dict[str, float] = field(default_factory=dict)
    events: int = 0
    split: list[int] = field(default_factory=list)  # anomalies of its rule per incident
    looks: LookStats | None = None  # None: run without early looks

    def found(self, i: Incident, best: str | None) -> bool:
        return best is not None and rank(best) >= rank(i.needs)

    def verdicts(self) -> list[tuple[str, bool, str]]:
        scored = [(i, b) for i, b in self.incidents if not i.below_data]
        hits = sum(self.found(i, b) for i, b in scored)
        loud = sum(a.severity != "low" for a in self.false)
        below = len(self.incidents) - len(scored)
        return [
            ("every incident found", hits == len(scored),
             f"{hits} of {len(scored)}" + (f" ({below} below data)" if below else "")),
            (f"medium/high false alarms <= {MAX_LOUD_FALSE}/month", loud <= MAX_LOUD_FALSE,
             str(loud)),
            (f"false alarms <= {MAX_FALSE}/month", len(self.false) <= MAX_FALSE,
             str(len(self.false))),
        ]  # fmt: skip


def score(shape: str, incidents: list[Incident], benign: list[Benign],
          anomalies: list[Anomaly]) -> Score:  # fmt: skip
    matched, split = [], []
    for i in incidents:
        levels = [a.severity for a in anomalies if _of(a, i) and _overlaps(a, i.start, i.end)]
        matched.append((i, max(levels, key=rank, default=None)))
        split.append(len(levels))
    false = [a for a in anomalies if not any(_overlaps(a, i.start, i.end) for i in incidents)]
    return Score(shape, matched, false, benign, split=split)


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%m-%d %H:%M} +{(end - start).total_seconds() / 60:.0f}m"


def _verdict(s: Score, i: Incident, best: str | None) -> str:
    if i.below_data:
        return "below data" + (f" ({best})" if best else "")
    if s.found(i, best):
        return f"yes ({best})"
    return f"no ({best})" if best else "no"


def print_shape(s: Score, list_false: bool) -> None:
    days = 30
    print(f"\n== {s.shape}: {s.events:,} events over 60 days; evaluated month of {days} days")
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in s.timings.items()) + "\n")
    rows = [["incident", "span (UTC)", "rule", "needs", "found? (best severity)", "anomalies"]]
    for (i, best), n in zip(s.incidents, s.split, strict=True):
        rule = i.rule + (f"/{i.scope}" if i.scope else "")
        rows.append([i.kind, _span(i.start, i.end), rule, i.needs, _verdict(s, i, best), str(n)])
    table(rows)
    for i, _ in s.incidents:
        if i.below_data:
            print(f"  below data: {i.kind}: {i.below_data}")
    rules = sorted({a.rule for a in s.false})
    rows = [["false alarms per month", *SEVERITIES, "total"]]
    for rule in [*rules, "all rules"]:
        mine = [a for a in s.false if rule in (a.rule, "all rules")]
        counts = [sum(a.severity == sev for a in mine) for sev in SEVERITIES]
        rows.append([rule, *map(str, counts), str(len(mine))])
    print()
    table(rows)
    for name, ok, detail in s.verdicts():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if s.looks is not None:
        print_looks(s)
    if list_false and s.false:
        print(f"\n  false alarms of {s.shape}:")
        for a in s.false:
            near = [b.kind for b in s.benign if _overlaps(a, b.start, b.end)]
            where = f"  [during {', '.join(near)}]" if near else ""
            print(
                f"  {_span(a.start, a.end)}  {a.severity:<6} {a.rule}/{a.scope}: {a.title}{where}"
            )


def _false_ids(s: Score) -> set[int]:
    return {a.id for a in s.false}


def print_looks(s: Score) -> None:
    """What the early looks did in this shape's month."""
    assert s.looks is not None
    lk = s.looks
    print()
    table(summary_rows([(s.shape, lk)], {s.shape: _false_ids(s)}))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(lk.outcomes.items())) or "none"
    print(f"  look findings by outcome: {outcomes}; unconfirmed marked by the closed passes:"
          f" {lk.unconfirmed_marked}; windows still only a look's:"
          f" {lk.pending_windows}")  # fmt: skip
    false = _false_ids(s)
    for anomaly_id, (start, m) in sorted(lk.opened.items()):
        end = lk.closed_first.get(anomaly_id)
        closed = f"first closed breach ends {end:%m-%d %H:%M}" if end else "never confirmed"
        kind = "FALSE ALARM" if anomaly_id in false else "incident"
        early = "found early" if anomaly_id in lk.early() else "a closed window found it first"
        print(f"  opened by a look: #{anomaly_id} window {start:%m-%d %H:%M} at minute {m};"
              f" {closed}; {early}; {kind}")  # fmt: skip


def print_summary(scores: list[Score]) -> None:
    """Recall per incident kind across the shapes run."""
    kinds = list(dict.fromkeys(i.kind for s in scores for i, _ in s.incidents))
    rows = [["incident kind", *(s.shape for s in scores), "recall"]]
    for kind in kinds:
        cells, hits, scored = [], 0, 0
        for s in scores:
            mine = [(i, b) for i, b in s.incidents if i.kind == kind]
            if not mine:
                cells.append("-")
                continue
            i, best = mine[0]
            cells.append(_verdict(s, i, best))
            if not i.below_data:
                scored, hits = scored + 1, hits + s.found(i, best)
        rows.append([kind, *cells, f"{hits}/{scored}" if scored else "-"])
    print("\nRECALL per incident kind\n")
    table(rows)
    rows = [["shape", *SEVERITIES, "false total", *(v[0] for v in scores[0].verdicts())]]
    for s in scores:
        counts = [str(sum(a.severity == sev for a in s.false)) for sev in SEVERITIES]
        marks = ["PASS" if ok else "FAIL" for _, ok, _ in s.verdicts()]
        rows.append([s.shape, *counts, str(len(s.false)), *marks])
    print("FALSE ALARMS per month and VERDICTS\n")
    table(rows)
    looked = [s for s in scores if s.looks is not None]
    if looked:
        print("EARLY LOOKS per month\n")
        table(summary_rows([(s.shape, s.looks) for s in looked if s.looks is not None],
                           {s.shape: _false_ids(s) for s in looked}))  # fmt: skip
