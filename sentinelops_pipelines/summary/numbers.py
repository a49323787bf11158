"""The fact check: every number in a text must be one of the numbers in the facts.

Formatting is normalised (1,234.50 = 1234.5; 12.5% = 12.5; a sign is wording: "down 3.2%" is
-3.2), so the AI may format and word numbers but not compute, round or invent them. Small
numbers written as words count too: "three disputes" must be backed by a 3.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

# Every digit run is a number, even glued to letters ("USD19,008.00", "v2"): a loose pattern
# would let an invented number through.
DIGITS = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
WORDS = {
    word: Decimal(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
        " fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": Decimal(30), "forty": Decimal(40), "fifty": Decimal(50), "hundred": Decimal(100),
     "dozen": Decimal(12), "thousand": Decimal(1000), "million": Decimal(1_000_000)}  # fmt: skip
WORD = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)


def _decimal(text: str) -> Decimal | None:
    try:
        return abs(Decimal(text.replace(",", "")))
    except InvalidOperation:
        return None


def numbers_in(text: str) -> list[Decimal]:
    found = [_decimal(m.group()) for m in DIGITS.finditer(text)]
    found += [WORDS[m.group().lower()] for m in WORD.finditer(text)]
    return [n for n in found if n is not None]


def fact_numbers(facts: Any) -> set[Decimal]:
    """Every number the facts hold: numeric values and the numbers inside string values
    (such as the date). Keys are names, not facts."""
    found: set[Decimal] = set()
    if isinstance(facts, dict):
        for value in facts.values():
            found |= fact_numbers(value)
    elif isinstance(facts, list):
        for value in facts:
            found |= fact_numbers(value)
    elif isinstance(facts, bool) or facts is None:
        pass
    elif isinstance(facts, int | float):
        number = _decimal(repr(facts))
        if number is not None:
            found.add(number)
    elif isinstance(facts, str):
        found.update(numbers_in(facts))
    return found


def unknown_numbers(text: str, facts: Any) -> list[str]:
    """The numbers in `text` that the facts do not hold, as written; empty when it checks out."""
    allowed = fact_numbers(facts)
    return sorted({str(n) for n in numbers_in(text) if n not in allowed})
