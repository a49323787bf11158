"""Stripe amounts: integers in the currency's minor unit, turned into the unit people read.

Stripe counts 1099 for 10.99 USD but 1099 for 1,099 JPY: some currencies have no unit below
the main one. That knowledge lives here once, for the rules' titles and the daily summary.
"""

from __future__ import annotations

# Stripe's zero-decimal currencies: an amount is already in whole units.
# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())


def is_zero_decimal(currency: str) -> bool:
    return currency.lower() in ZERO_DECIMAL


def major_units(amount: float, currency: str) -> float:
    """A Stripe amount in the currency's unit, to the cent (an average of yen may hold some)."""
    return round(amount if is_zero_decimal(currency) else amount / 100, 2)


def format_amount(amount: float, currency: str) -> str:
    """A Stripe amount as people write it: `10.99 USD`, `1,099 JPY`."""
    if is_zero_decimal(currency):
        return f"{amount:,.0f} {currency.upper()}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def format_major(value: float, currency: str) -> str:
    """A figure already in the currency's unit (from `major_units`), every digit it holds kept:
    whole units of JPY and the like when whole, else cents, so a fact check finds it as is."""
    decimals = 0 if float(value).is_integer() and is_zero_decimal(currency) else 2
    return f"{value:,.{decimals}f} {currency.upper()}"
