"""How sure a comparison over seeds is: the 95% interval of a mean, and the sign test of a count.

Every comparison report (the sweep's paired table, the backskip table, the slow-start tables) takes its
intervals and sign tests from here, so that a "95% interval" means the same thing everywhere:

* **interval**: Student's t interval of the mean over seeds, ``mean ± t(0.975, n - 1) · sd / √n``, with ``sd``
  the sample standard deviation (n − 1). Seeds are the unit: each seed's paired ratio is one observation. With
  3 seeds t is 4.30, so a 3-seed interval is wide; none exists for one seed.
* **sign test**: of n seeds, k favour the model; the one-sided p of at least that many (or at least that few)
  under "each seed is a coin flip", ``P(X >= max(k, n - k))`` for X ~ Binomial(n, 1/2). With 3 seeds the
  smallest possible p is 0.125, with 5 it is 0.031.
* **a rate's interval**: of n runs, k had some property (a slow start); Clopper and Pearson's exact 95% interval
  of the underlying rate (two-sided, 2.5% in each tail).
* **±** in a report is the sample standard deviation over seeds (n − 1), not an interval; each report says so.
"""

from __future__ import annotations

import math
import statistics

# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom 1-30; beyond 30, the normal's 1.96
# understates it by at most 4%.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
PLUS_MINUS = "± is the sample standard deviation over seeds (n − 1)"
INTERVAL = "95% interval: Student's t over seeds, mean ± t(0.975, n − 1) · sd / √n"


def _clean(values) -> list[float]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def t_interval(values) -> tuple[float, float] | None:
    """The 95% t interval of the mean of ``values`` (None, NaN dropped); None with fewer than 2 values."""
    values = _clean(values)
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    df = len(values) - 1
    half = (T_975[df - 1] if df <= len(T_975) else 1.96) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def sign_test(favourable: int, n: int) -> float | None:
    """One-sided sign-test p of the larger side: ``P(X >= max(k, n - k))``, X ~ Binomial(n, 1/2); None if n = 0."""
    if n <= 0:
        return None
    k = max(favourable, n - favourable)
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def describe_interval(interval: tuple[float, float] | None, digits: int = 2) -> str:
    """``[a, b]``, or ``n/a`` without one."""
    if interval is None:
        return "n/a"

    def bound(value: float) -> str:  # a bound that rounds to 1 gets one more digit: which side of 1 it lies on
        text = f"{value:.{digits}f}"
        return f"{value:.{digits + 1}f}" if float(text) == 1 and value != 1 else text

    return f"[{bound(interval[0])}, {bound(interval[1])}]"


def ratio_words(interval: tuple[float, float] | None, n: int, lower_is_faster: bool = True) -> str:
    """Words that match a time ratio's interval: faster or slower only where the interval excludes 1."""
    if interval is None:
        return f"no interval (n = {n})"
    low, high = interval
    if high < 1:
        return f"{'faster' if lower_is_faster else 'slower'} (n = {n})"
    if low > 1:
        return f"{'slower' if lower_is_faster else 'faster'} (n = {n})"
    return f"no difference detected (n = {n})"


def describe_sign(favourable: int, n: int, what: str = "faster") -> str:
    """``k/n faster (sign test p = 0.125)``."""
    p = sign_test(favourable, n)
    return f"{favourable}/{n} {what}" + ("" if p is None else f" (p = {p:.3g})")


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X >= k) if ``upper`` else P(X <= k), X ~ Binomial(n, p)."""
    span = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in span)


def rate_interval(k: int, n: int) -> tuple[float, float] | None:
    """Clopper-Pearson's exact 95% interval of a rate seen as ``k`` of ``n``; None for n = 0."""
    if n <= 0:
        return None

    def solve(target, upper: bool) -> float:  # the p whose tail probability is 0.025 (the tail rises with p)
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            rising = _binomial_tail(k, n, mid, upper) if upper else 1 - _binomial_tail(k, n, mid, upper)
            if rising < target:
                low = mid
            else:
                high = mid
        return (low + high) / 2

    lower = 0.0 if k == 0 else solve(0.025, upper=True)
    upper_bound = 1.0 if k == n else solve(0.975, upper=False)
    return lower, upper_bound
