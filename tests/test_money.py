"""Stripe amounts come in the currency's minor unit, except where a currency has none: each
case is one way a figure could be shown wrong (a hundred times off, cents of yen, a lost digit)."""

from __future__ import annotations

import pytest

from sentinelops.money import format_amount, format_major, major_units


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        pytest.param(1099, "usd", "10.99 USD", id="cents_of_a_dollar"),
        pytest.param(123_456_789, "eur", "1,234,567.89 EUR", id="thousands_are_grouped"),
        pytest.param(1099, "jpy", "1,099 JPY", id="yen_have_no_cents"),
        pytest.param(1099, "KRW", "1,099 KRW", id="the_currency_in_any_case"),
        pytest.param(33_333.6, "jpy", "33,334 JPY", id="an_average_of_yen_in_whole_yen"),
    ],
)
def test_a_stripe_amount_as_people_write_it(amount, currency, shown):
    assert format_amount(amount, currency) == shown


@pytest.mark.parametrize(
    ("amount", "currency", "major", "shown"),
    [
        pytest.param(1_152_000, "usd", 11_520.0, "11,520.00 USD", id="cents_become_dollars"),
        pytest.param(1999, "usd", 19.99, "19.99 USD", id="cents_are_kept"),
        pytest.param(150_000, "jpy", 150_000, "150,000 JPY", id="yen_stay_yen"),
        pytest.param(100_000 / 3, "jpy", 33_333.33, "33,333.33 JPY",
                     id="an_average_of_yen_keeps_the_cents_it_holds"),
    ],
)  # fmt: skip
def test_the_summary_states_the_figure_it_holds(amount, currency, major, shown):
    assert major_units(amount, currency) == major
    assert format_major(major_units(amount, currency), currency.upper()) == shown
