"""On-demand Monte Carlo value-at-risk of a long-only portfolio, simulated in Spark.

Example call (sync)::

    curl -X POST \\
         'http://127.0.0.1:2004/v2/api/functions/simulate_portfolio/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{
           "weights":          {"EQUITY": 0.6, "BONDS": 0.3, "GOLD": 0.1},
           "expected_returns": {"EQUITY": 0.07, "BONDS": 0.03, "GOLD": 0.04},
           "volatilities":     {"EQUITY": 0.18, "BONDS": 0.06, "GOLD": 0.15},
           "days": 10, "scenarios": 100000}'

    → {"initial_value": 1000000.0, "days": 10, "scenarios": 100000,
       "mean_final_value": 1002164.6...,
       "percentiles": {"1.0": 952483.6..., "5.0": 966510.3..., "50.0": 1001815.8...,
                       "95.0": 1039030.4..., "99.0": 1054960.5...},
       "value_at_risk": {"95": 33489.6..., "99": 47516.3...},
       "expected_shortfall_95": 42083.2...}
"""

import math
import random
from functools import reduce
from operator import add

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

TRADING_DAYS_PER_YEAR = 252
# percentile_approx's accuracy: rank error ≤ scenarios / accuracy, i.e. ≤ 0.01 percentile points.
_QUANTILE_ACCURACY = 10_000
_WEIGHT_TOLERANCE = 1e-6


def simulate_portfolio(
    spark: SparkSession,
    weights: dict[str, float],
    expected_returns: dict[str, float],
    volatilities: dict[str, float],
    initial_value: float = 1_000_000.0,
    days: int = 10,
    scenarios: int = 10_000,
    seed: int = 42,
    # A tuple, since defaults are shared between calls; callers send a JSON list.
    percentiles: list[float] = (1.0, 5.0, 50.0, 95.0, 99.0),  # type: ignore[assignment]
) -> dict:
    """Simulate the portfolio's value after ``days`` trading days in ``scenarios`` scenarios.

    Model: each asset follows a geometric Brownian motion, independently of the others, with
    annual drift ``expected_returns[a]`` and annual volatility ``volatilities[a]`` (decimals:
    0.07 = 7 %), converted with 252 trading days a year. Its daily log return is normal with
    mean (mu - sigma²/2)/252 and standard deviation sigma/√252. The portfolio is bought at
    ``initial_value`` split by ``weights`` and held (no rebalancing), so each asset's value at
    the horizon depends only on the sum of its ``days`` daily log returns, which is exactly
    normal with mean days·(mu - sigma²/2)/252 and sd sigma·√(days/252). One ``randn`` per asset
    per scenario therefore gives the same distribution as simulating every day, ``days`` times
    cheaper. The expected final value of an asset is its initial value * exp(mu·days/252).

    ``weights`` must be positive and sum to 1 (within 1e-6); they are not normalised, so a
    typo is an error rather than a silently different portfolio. The three dicts must name the
    same assets. ``percentiles`` are of the final portfolio value, each strictly between 0 and
    100; they come back ascending, keyed like "5.0". ``value_at_risk`` is initial value minus
    the 5th ("95") and 1st ("99") percentile of the final value (negative means even that bad a
    scenario gains); ``expected_shortfall_95`` is the mean loss over the scenarios at or below
    the 5th percentile. Everything is computed in the executors; results are reproducible for
    a given ``seed`` (and cluster parallelism).

    Example: ``simulate_portfolio(spark, weights={"A": 0.5, "B": 0.5},
    expected_returns={"A": 0.08, "B": 0.03}, volatilities={"A": 0.2, "B": 0.05},
    scenarios=20_000)`` → ``{"initial_value": 1000000.0, "days": 10, "scenarios": 20000,
    "mean_final_value": ..., "percentiles": {"1.0": ..., ...}, "value_at_risk": {"95": ...,
    "99": ...}, "expected_shortfall_95": ...}``.
    """
    assets = _check_assets(weights, expected_returns, volatilities)
    initial_value = _number("initial_value", initial_value)
    if initial_value <= 0:
        raise ValueError(f"initial_value must be positive, got {initial_value!r}")
    _positive_int("days", days)
    _positive_int("scenarios", scenarios)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    wanted = _check_percentiles(percentiles)

    # Final value of the portfolio in one scenario, as a Spark column expression:
    #   sum over assets of  initial·w · exp(days·(mu - sigma²/2)/252 + sigma·√(days/252)·Z)
    # with Z ~ N(0, 1) drawn by randn; each asset gets its own seed, derived from ``seed``.
    horizon = days / TRADING_DAYS_PER_YEAR
    rng = random.Random(seed)
    terms = []
    for asset in assets:
        mu, sigma = expected_returns[asset], volatilities[asset]
        drift = (mu - sigma * sigma / 2.0) * horizon
        shock = sigma * math.sqrt(horizon) * F.randn(rng.getrandbits(62))
        terms.append(F.lit(initial_value * weights[asset]) * F.exp(drift + shock))
    simulated = spark.range(scenarios).select(reduce(add, terms).alias("final"))

    # Pass 1: mean and all the quantiles in one aggregation (1st and 5th are needed for VaR).
    levels = sorted(set(wanted) | {1.0, 5.0})
    # An aggregation without groupBy is exactly one row.
    (stats,) = simulated.agg(
        F.avg("final").alias("mean"),
        F.percentile_approx(
            "final", [level / 100.0 for level in levels], _QUANTILE_ACCURACY
        ).alias("quantiles"),
    ).collect()
    quantile = dict(zip(levels, stats["quantiles"], strict=True))
    p5 = quantile[5.0]

    # Pass 2: the average of the worst 5 % needs the 5th percentile first. The seeded
    # generators reproduce exactly the same scenarios, so nothing has to be cached.
    ((tail_mean,),) = simulated.where(F.col("final") <= p5).agg(F.avg("final")).collect()
    if tail_mean is None:  # cannot happen (p5 is one of the values), but never return null
        tail_mean = p5

    return {
        "initial_value": initial_value,
        "days": days,
        "scenarios": scenarios,
        "mean_final_value": float(stats["mean"]),
        "percentiles": {str(level): float(quantile[level]) for level in wanted},
        "value_at_risk": {
            "95": initial_value - float(p5),
            "99": initial_value - float(quantile[1.0]),
        },
        "expected_shortfall_95": initial_value - float(tail_mean),
    }


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_assets(weights, expected_returns, volatilities) -> list[str]:
    """Validate the three per-asset dicts; return the asset names in a stable order."""
    for name, values in (
        ("weights", weights),
        ("expected_returns", expected_returns),
        ("volatilities", volatilities),
    ):
        if not isinstance(values, dict) or not values:
            raise ValueError(f"{name} must be a non-empty object of asset name to number")
        for asset, value in values.items():
            _number(f"{name}[{asset!r}]", value)

    assets = sorted(weights)
    for name, values in (("expected_returns", expected_returns), ("volatilities", volatilities)):
        if set(values) != set(weights):
            missing = sorted(set(weights) - set(values))
            extra = sorted(set(values) - set(weights))
            raise ValueError(
                f"{name} must name the same assets as weights "
                f"(missing: {missing}, not in weights: {extra})"
            )

    for asset in assets:
        if weights[asset] <= 0:
            raise ValueError(f"weights[{asset!r}] must be positive, got {weights[asset]!r}")
        if volatilities[asset] < 0:
            raise ValueError(
                f"volatilities[{asset!r}] must not be negative, got {volatilities[asset]!r}"
            )
    total = math.fsum(weights.values())
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"weights must sum to 1 (within {_WEIGHT_TOLERANCE}), they sum to {total}")
    return assets


def _check_percentiles(percentiles) -> list[float]:
    if not isinstance(percentiles, (list, tuple)) or not percentiles:
        raise ValueError("percentiles must be a non-empty list of numbers")
    wanted = []
    for p in percentiles:
        p = _number("percentiles", p)
        if not 0.0 < p < 100.0:
            raise ValueError(f"percentiles must each be strictly between 0 and 100, got {p!r}")
        wanted.append(p)
    return sorted(set(wanted))
