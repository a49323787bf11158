"""The fact check: each number in a text must be a figure the facts state, read in its context.

Only reportable figures (`facts.reportable`) vouch for a number, each as what it is: a count or
an amount of its metric, the failure rate in %, a change in % (in points for the failure rate),
a window, minute or day count next to that word, the date as a date. The year or the day of
the month of the date, 288 windows a day or a rule's name vouch for nothing else.

A change needs its sign or a direction word ("-20.0%", "down 20.0%", "20.0% lower") that agrees
with the fact; "rose to X" and "up from Y" must agree with how the day moved. The metric a number
speaks of is read from the words around it ("6 refunds", "Revenue: ... -20.0%"); where none is
named, a figure of the same kind of any metric will do. Formatting is free (1,234.50 = 1234.5,
"three" = 3, "March 9" = 2026-03-09); computing, rounding and inventing are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from sentinelops_pipelines.summary.facts import CONTEXT_UNITS, Series, reportable

NUMBER_WORDS = {
    word: Decimal(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
        " fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": Decimal(30), "forty": Decimal(40), "fifty": Decimal(50), "hundred": Decimal(100),
     "dozen": Decimal(12), "thousand": Decimal(1000), "million": Decimal(1_000_000)}  # fmt: skip
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_MONTH = r"(?i:january|february|march|april|june|july|august|september|sept|october|november" \
         r"|december|" + "|".join(MONTHS) + ")"  # fmt: skip
_TH = "(?:st|nd|rd|th)?"
TOKEN = re.compile(
    rf"(?P<date>\b(?P<iso>\d{{4}}-\d\d-\d\d)\b|(?:\b(?P<m1>{_MONTH})\.? (?P<d1>\d{{1,2}}){_TH}"
    rf"|\b(?P<d2>\d{{1,2}}){_TH} (?:of )?(?P<m2>{_MONTH}))\b(?:,? (?P<y>\d{{4}})\b)?)"
    # A sign is a sign only where it cannot be a hyphen or a range ("2026-03", "10:00-10:05").
    r"|(?P<number>(?:(?<![\w.,])[+\-−–])?\d+(?:,\d{3})*(?:\.\d+)?)(?:-(?P<suffix>[A-Za-z]+))?"
    r"|(?P<word>[^\W\d]+)|(?P<symbol>[%$€£¥])|(?P<stop>[.!?\n])|(?P<pause>[,;:()\[\]])"
)
KINDS = ("date", "number", "word", "symbol", "stop", "pause")
SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
NOT_CURRENCIES = frozenset({"UTC", "GMT"})
UNIT_WORDS = {
    "%": "percent", "percent": "percent", "pct": "percent",
    "points": "points", "point": "points", "pts": "points", "pt": "points", "pp": "points",
    "windows": "windows", "window": "windows",
    "minutes": "minutes", "minute": "minutes", "min": "minutes", "mins": "minutes",
    "days": "days", "day": "days",
}  # fmt: skip
UP = frozenset("""up rose rise rises rising risen increase increased increases increasing grew
    grow grows growing grown growth gain gained gains climb climbed climbs jump jumped jumps
    surge surged higher above more over exceeded exceeding exceeds""".split())  # fmt: skip
DOWN = frozenset("""down fell fall falls falling fallen decrease decreased decreases decreasing
    drop dropped drops dropping dip dipped dips slid slipped sank shrank shrunk plunged
    plummeted tumbled lower below less fewer under reduced reduction""".split())  # fmt: skip
# "above 2.8%" names the base the day is above; "up 20%" names the change itself.
COMPARATIVES = frozenset("higher above more over exceeded exceeding exceeds lower below less"
                         " fewer under".split())  # fmt: skip
FILLER = frozenset("a an the some about nearly almost roughly around just only was were is are"
                   " been has have had its their by of on against versus vs compared with"
                   .split())  # fmt: skip
BASES = frozenset("average previous yesterday usual baseline mean day week prior".split())
# The words that name a metric, and the series they name.
SUBJECTS = tuple(
    (re.compile(words), frozenset(names.split()))
    for words, names in (
        (r"revenues?|sales|income", "revenue"),
        (r"payments?|charges?|transactions?", "payments"),
        (r"fail\w*|declin\w*", "payments_failed failure_rate_pct"),
        (r"refund\w*", "refunds"),
        (r"disputes?|disputed|chargebacks?", "disputes"),
        (r"subscri\w*", "subscriptions_started subscriptions_cancelled"),
        (r"started|signups?", "subscriptions_started"),
        (r"cancel\w*|churn\w*", "subscriptions_cancelled"),
        (r"anomal\w*|incidents?|rules?|silenc\w*|cleared", "anomalies"),
    )
)


class Role(Enum):
    LEVEL = "level"  # "1,728 payments": a value of a metric
    CHANGE = "change"  # "-20.0%", "down 20.0%", "20.0% lower": a change, with its direction
    DAY = "day"  # "rose to 16.7%": the day's value, which moved that way
    BASE = "base"  # "up from 2.8%", "above 2.8%": a base the day moved away from


# Between a direction word and its number: "rose to 16.7%", "up from 2.8%", "higher than 2.8%".
MARKERS = {"to": Role.DAY, "at": Role.DAY, "from": Role.BASE, "than": Role.BASE}


@dataclass(frozen=True)
class Token:
    kind: str  # one of KINDS
    text: str
    start: int
    end: int
    value: Decimal | None = None  # a number's, without its sign
    direction: str | None = None  # a number's sign: "up" or "down"
    suffix: str = ""  # "minute" of "5-minute"
    ymd: tuple[int | None, int, int] | None = None  # a date's (year if written, month, day)


@dataclass(frozen=True)
class Claim:
    value: Decimal
    unit: str  # "plain", "money:USD", "percent", "points" or one of CONTEXT_UNITS
    direction: str | None
    role: Role


@dataclass(frozen=True)
class Mismatch:
    written: str
    reason: Literal["not_a_fact", "wrong_direction"]


def _tokens(text: str) -> list[Token]:
    tokens = []
    for m in TOKEN.finditer(text):
        kind = next(k for k in KINDS if m.group(k) is not None)
        raw, value, sign = m.group(kind), None, None
        ymd: tuple[int | None, int, int] | None = None
        if kind == "date" and m.group("iso"):
            year, month, day = (int(part) for part in raw.split("-"))
            ymd = (year, month, day)
        elif kind == "date":
            month = MONTHS.index((m.group("m1") or m.group("m2"))[:3].lower()) + 1
            ymd = (int(m.group("y")) if m.group("y") else None, month,
                   int(m.group("d1") or m.group("d2")))  # fmt: skip
        elif kind == "number":
            sign = "up" if raw[0] == "+" else "down" if raw[0] in "-−–" else None
            value = Decimal(raw.lstrip("+-−–").replace(",", ""))
        elif kind == "word" and raw.lower() in NUMBER_WORDS:
            kind, value = "number", NUMBER_WORDS[raw.lower()]
        suffix = (m.group("suffix") or "") if kind == "number" else ""
        tokens.append(Token(kind, raw, m.start(), m.end(), value, sign, suffix, ymd))
    return tokens


def _word(tokens: list[Token], i: int) -> str:
    return tokens[i].text.lower() if 0 <= i < len(tokens) and tokens[i].kind == "word" else ""


def _currency(token: Token) -> str | None:
    if token.kind == "symbol":
        return SYMBOLS.get(token.text)
    text = token.text
    ok = token.kind == "word" and len(text) == 3 and text.isupper() and text not in NOT_CURRENCIES
    return text if ok else None


def _unit(tokens: list[Token], i: int) -> tuple[str, int]:
    """What the number at `i` counts, and where the words after it start."""
    if tokens[i].suffix.lower() in UNIT_WORDS:  # "5-minute", "7-day", "13.9-point"
        return UNIT_WORDS[tokens[i].suffix.lower()], i + 1
    j = i + 1
    while j < len(tokens) and tokens[j].kind == "number" and tokens[j].suffix:
        j += 1  # "288 5-minute windows": the modifier is not the noun
    word = tokens[j].text.lower() if j < len(tokens) else ""
    if word == "per" and _word(tokens, j + 1) == "cent":
        return "percent", j + 2
    if word == "percentage" and _word(tokens, j + 1).startswith("point"):
        return "points", j + 2
    if word in UNIT_WORDS and (j == i + 1 or UNIT_WORDS[word] == "windows"):
        return UNIT_WORDS[word], j + 1
    if i + 1 < len(tokens) and (currency := _currency(tokens[i + 1])):  # "25.00 EUR"
        return f"money:{currency}", i + 2
    if i and (currency := _currency(tokens[i - 1])):  # "$25.00", "USD 25.00"
        return f"money:{currency}", i + 1
    return "plain", i + 1


def _direction(tokens: list[Token], i: int, after: int) -> tuple[str | None, Role]:
    """The direction a number is stated with, and what that makes it."""
    if tokens[i].direction:
        return tokens[i].direction, Role.CHANGE
    marker, base, nearer = None, False, ""
    for j in range(i - 1, max(i - 9, -1), -1):  # "fell 20%", "rose sharply to 16.7%"
        word = _word(tokens, j)
        if word in UP or word in DOWN:
            if marker is None and nearer in ("by", "of"):  # "a drop of 20%"
                marker = Role.CHANGE
            elif marker is None and (base or word in COMPARATIVES):  # "above the average of"
                marker = Role.BASE
            return ("up" if word in UP else "down"), marker or Role.CHANGE
        if word in MARKERS:
            marker = marker or MARKERS[word]
        elif word in BASES or (tokens[j].kind == "number" and tokens[j].suffix):
            base = True  # "the 7-day average", "the previous day"
        elif not (word in FILLER or word.endswith("ly")):
            break
        nearer = word
    word = _word(tokens, after)  # "20% lower", "3, up from 0"
    if word in UP or word in DOWN:
        role = Role.DAY if _word(tokens, after + 1) == "from" else Role.CHANGE
        return ("up" if word in UP else "down"), role
    return None, Role.LEVEL


def _named(token: Token, currencies: set[str]) -> frozenset[str]:
    if token.kind != "word":
        return frozenset()
    if token.text in currencies:  # "USD" (upper case: "eur" is no currency)
        return frozenset({f"revenue:{token.text}"})
    word = token.text.lower()
    return next((names for pattern, names in SUBJECTS if pattern.fullmatch(word)), frozenset())


def _subject(tokens: list[Token], i: int, currencies: set[str]) -> frozenset[str] | None:
    """The series the number at `i` speaks of: those named in the three words after it ("6
    refunds", "288 payments failed"), else the nearest named before it in its sentence, with
    the word before that ("failed payments"); None: any."""
    _, after = _unit(tokens, i)
    named: frozenset[str] = frozenset()
    for token in tokens[after : after + 3]:
        if token.kind != "word":
            break
        named |= _named(token, currencies)
    if named:
        return named
    for j in range(i - 1, -1, -1):
        if tokens[j].kind == "stop":
            break
        if near := _named(tokens[j], currencies):
            return near | (_named(tokens[j - 1], currencies) if j else frozenset())
    return None


def _agrees(direction: str | None, delta: Decimal) -> bool:
    return delta == 0 or (delta > 0) == (direction == "up")


def _holds(c: Claim, s: Series, strict: bool) -> bool:
    """Whether `s` vouches for `c`; not `strict`: whatever the direction (to tell a wrong or
    missing direction from an invented number)."""
    if c.unit in CONTEXT_UNITS or s.unit in CONTEXT_UNITS:
        return c.unit == s.unit and any(v == c.value for _, v in s.levels)
    # A change needs its direction, except none at all: "0.0%" contradicts nothing.
    if c.role is Role.CHANGE or (c.role is Role.LEVEL and (not strict or c.value == 0)):
        if c.unit == s.change_unit and any(
            abs(v) == c.value and (not strict or _agrees(c.direction, v)) for v in s.changes
        ):
            return True
        if c.role is Role.CHANGE:
            return False
    plain = c.unit == "plain" and (s.unit == "count" or s.unit.startswith("money:"))
    if not (plain or c.unit == s.unit):
        return False
    day = s.level("day")
    bases = [b for b in (s.level("previous_day"), s.level("average_7d")) if b is not None]
    for role, value in s.levels:
        if value != c.value:
            continue
        if c.role is Role.LEVEL:
            return True
        if c.role is Role.DAY and role == "day":
            return not strict or any(_agrees(c.direction, value - b) for b in bases)
        if c.role is Role.BASE and role in ("previous_day", "average_7d") and day is not None:
            return not strict or _agrees(c.direction, day - value)
    return False


def check(text: str, facts: dict[str, Any]) -> list[Mismatch]:
    """Every number in `text` that the facts do not state as written; empty when it checks out."""
    figures = reportable(facts)
    currencies = {s.unit.split(":")[1] for s in figures if s.unit.startswith("money:")}
    day = date.fromisoformat(facts["date"]) if facts.get("date") else None
    # Rule names are names: their digits ("spike_5m") are no figures.
    for rule in sorted(facts.get("anomalies", {}).get("still_open_by_rule", {}), key=len)[::-1]:
        text = text.replace(rule, "rule")
    tokens = _tokens(text)
    found = []
    for i, token in enumerate(tokens):
        if token.kind == "date" and token.ymd:
            y, m, d = token.ymd
            if not day or (m, d) != (day.month, day.day) or y not in (None, day.year):
                found.append(Mismatch(token.text, "not_a_fact"))
        if token.kind != "number" or token.value is None:
            continue
        unit, after = _unit(tokens, i)
        target = i  # "200 of 288 windows": 200 counts what 288 counts
        if unit == "plain" and _word(tokens, after) == "of" and after + 1 < len(tokens):
            if tokens[after + 1].kind == "number":
                target = after + 1
                unit = _unit(tokens, target)[0]
        direction, role = _direction(tokens, i, after)
        claim = Claim(token.value, unit, direction, role)
        if unit.startswith("money:"):
            scope: frozenset[str] | None = frozenset({f"revenue:{unit[6:]}"})
        elif unit in CONTEXT_UNITS:
            scope = frozenset({unit})
        else:
            scope = _subject(tokens, target, currencies)
        candidates = [
            s for s in figures
            if scope is None or s.name in scope or s.name.split(":")[0] in scope
        ]  # fmt: skip
        if not any(_holds(claim, s, strict=True) for s in candidates):
            wrong = any(_holds(claim, s, strict=False) for s in candidates)
            written = text[token.start : max(token.end, tokens[after - 1].end)]
            found.append(Mismatch(written, "wrong_direction" if wrong else "not_a_fact"))
    return found


def unknown_numbers(text: str, facts: dict[str, Any]) -> list[str]:
    """The numbers in `text` the facts do not vouch for, as written; empty when it checks out."""
    return [m.written for m in check(text, facts)]
