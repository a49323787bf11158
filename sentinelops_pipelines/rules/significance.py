"""How surprising a count is: upper tails of the binomial, Poisson and normal distributions, and
the per-test bound a daily false-alarm budget allows.

A rule judged every 5 minutes makes 288 decisions a day per window length it looks at (and per
scope); `per_test` spreads the rule's daily budget of false alarms over them, so the chance of a
false alarm does not grow with traffic or with the number of windows evaluated (a Bonferroni
bound: overlapping windows are correlated, which only makes it stricter than it says).

Pure math: sums of terms in log space, exact for the counts a window can hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

DECISIONS_PER_DAY = 288  # 5-minute windows
# Early looks at a window still open: one a minute, after its first whole minute (1 to 4).
LOOKS_PER_WINDOW = 4


def per_test(budget_per_day: float, decisions_per_window: int = 1) -> float:
    """The tail probability one decision may reach so that all of a day's decisions together
    raise at most `budget_per_day` false alarms on average."""
    return budget_per_day / (DECISIONS_PER_DAY * max(decisions_per_window, 1))


def look_share(early_share: float, look_minutes: int | None) -> float:
    """The part of a window's bound one decision may spend when the window is also looked at
    early: `early_share` split over the LOOKS_PER_WINDOW looks, the rest for the closed window.
    Every look is a decision of its own (a union bound, like per_test's), so looking five
    times per window raises no more false alarms than the one decision did."""
    if look_minutes is None:
        return 1.0 - early_share
    return early_share / LOOKS_PER_WINDOW


def _log_sum(first_log_term: float, ratio: Callable[[int], float], k: int, last: int) -> float:
    """log of term(k) + term(k±1) + ... + term(last), stepping towards `last`, given log term(k)
    and ratio(j) = next term / term(j). Stops once the terms no longer count."""
    step = 1 if last >= k else -1
    total, log_term = 1.0, 0.0
    while k != last:
        r = ratio(k)
        if r <= 0:
            break
        log_term += math.log(r)
        term = math.exp(log_term)
        total += term
        k += step
        if term < total * 1e-17 and r < 1:
            break
    return first_log_term + math.log(total)


def _binomial_log_pmf(k: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )  # fmt: skip


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p). Sums whichever tail is short: from k up when k is past
    the mean (the terms fall at once), else 1 - the terms below k, summed down from k - 1."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    odds = p / (1 - p)
    if k > n * p:
        up = _log_sum(_binomial_log_pmf(k, n, p), lambda j: (n - j) / (j + 1) * odds, k, n)
        return min(1.0, math.exp(up))
    down = _log_sum(_binomial_log_pmf(k - 1, n, p), lambda j: j / (n - j + 1) / odds, k - 1, 0)
    return max(0.0, 1.0 - math.exp(down))


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), summing the short tail as binomial_sf does."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k > mean:
        log_first = k * math.log(mean) - mean - math.lgamma(k + 1)
        return min(1.0, math.exp(_log_sum(log_first, lambda j: mean / (j + 1), k, k + 100_000)))
    log_first = (k - 1) * math.log(mean) - mean - math.lgamma(k)
    return max(0.0, 1.0 - math.exp(_log_sum(log_first, lambda j: j / mean, k - 1, 0)))


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


MAX_STRENGTH = 999.0  # where a probability underflows to 0: finite, so evidence stays JSON


def strength(p_value: float, bound: float) -> float:
    """How far past the bound a tail probability is, in multiples of the bound's surprise:
    1.0 at the bound, 2.0 at its square (log p / log bound); 0 when p is 1."""
    if p_value <= 0:
        return MAX_STRENGTH
    how_far = math.log(p_value) / math.log(bound) if p_value < 1 else 0.0
    return min(how_far, MAX_STRENGTH)


def reported(probability: float) -> float:
    """A probability as evidence shows it: three significant digits."""
    return float(f"{probability:.3g}")


def binomial_bound(n: int, p: float, alpha: float) -> int | None:
    """The smallest count k with P(X >= k) <= alpha among n trials at rate p (None: not even
    all n would be that surprising)."""
    if n <= 0:
        return None
    lo, hi = max(1, math.floor(n * p)), n
    if binomial_sf(hi, n, p) > alpha:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_sf(mid, n, p) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def poisson_bound(mean: float, alpha: float) -> int:
    """The smallest count k with P(X >= k) <= alpha for a Poisson count of this mean."""
    k = max(1, math.floor(mean))
    step = max(1, int(math.sqrt(mean)) + 1)
    hi = k
    while poisson_sf(hi, mean) > alpha:
        hi += step
    lo = k
    while lo < hi:
        mid = (lo + hi) // 2
        if poisson_sf(mid, mean) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


TIE = 1e-6  # relative: closer to the bound than this, two ways of summing a tail may disagree


@lru_cache(maxsize=4096)  # a shop's quiet hours repeat their inputs
def quick_binomial_bound(n: int, p: float, alpha: float) -> int | None:
    """binomial_bound's answer in one pass, for a reading in every window (its bisection sums
    a tail per step: 12 tails of ~100 terms for 2 hours of a busy shop). Near a tie it asks
    binomial_bound itself, so the two never differ."""
    mean = n * p
    lo = max(1, math.floor(mean))
    if n < lo:
        return None
    start = min(n, max(lo, math.floor(mean + 2 * math.sqrt(mean * (1 - p)))))
    odds = p / (1 - p)
    first = math.exp(_binomial_log_pmf(start, n, p))
    bound, at, below = _first_past(
        alpha, start, lo, n, first,
        up=lambda k: (n - k) / (k + 1) * odds, down=lambda k: k / ((n - k + 1) * odds),
    )  # fmt: skip
    return binomial_bound(n, p, alpha) if _near(alpha, at, below) else bound


@lru_cache(maxsize=4096)
def quick_poisson_bound(mean: float, alpha: float) -> int:
    """poisson_bound's answer in one pass (its search sums a tail per step); near a tie it
    asks poisson_bound itself, so the two never differ."""
    if mean <= 0:
        return poisson_bound(mean, alpha)
    lo = max(1, math.floor(mean))
    start = max(lo, math.floor(mean + 2 * math.sqrt(mean)))
    first = math.exp(start * math.log(mean) - mean - math.lgamma(start + 1))
    bound, at, below = _first_past(
        alpha, start, lo, None, first, up=lambda k: mean / (k + 1), down=lambda k: k / mean
    )
    assert bound is not None  # a Poisson count has no top: some count is always past chance
    return poisson_bound(mean, alpha) if _near(alpha, at, below) else bound


def _first_past(
    alpha: float,
    start: int,
    lo: int,
    hi: int | None,
    first: float,
    up: Callable[[int], float],
    down: Callable[[int], float],
) -> tuple[int | None, float, float]:
    """The smallest count k >= lo with P(X >= k) <= alpha (None: not even `hi`), with the
    tails at k and at k - 1, given the probability `first` of `start` and the ratios of one
    term to the next going up and down. The terms from `start` (two standard deviations above
    the mean) up until what is left cannot matter are summed from the top down, then down past
    the start if need be."""
    k, term, terms = start, first, [first]
    while hi is None or k < hi:
        ratio = up(k)  # falls as k rises: the rest is under a geometric sum
        if ratio < 1 and term * ratio < alpha * 1e-9 * (1 - ratio):
            break
        term *= ratio
        terms.append(term)
        k += 1
    above = tail = 0.0  # P(X > k), P(X >= k)
    for term in reversed(terms):
        above, tail = tail, tail + term
        if tail > alpha:  # k is the last count within chance
            return (k + 1 if hi is None or k < hi else None), above, tail
        k -= 1
    term, k = first, start
    while k > lo:  # every count from the start up is past chance: step down
        term *= down(k)
        k -= 1
        above, tail = tail, tail + term
        if tail > alpha:
            return k + 1, above, tail
    return lo, tail, math.inf


def _near(alpha: float, at: float, below: float) -> bool:
    """Whether the tail at the bound, or just below it, is too close to alpha for a one-pass
    sum to tell which side it is on."""
    return abs(at - alpha) < TIE * alpha or abs(below - alpha) < TIE * alpha
