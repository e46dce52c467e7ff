"""Estimate pi by throwing random darts at the unit square, in Spark.

Example call (sync)::

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/pi/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{"samples": 1000000, "seed": 7}'

    → {"pi": 3.14..., "samples": 1000000, "inside": 785...}
"""

import random
from typing import Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def pi(
    spark: SparkSession,
    samples: int = 1_000_000,
    seed: Optional[int] = None,
) -> dict:
    """Monte Carlo estimate of pi from ``samples`` random points in the unit square.

    The fraction of points with x² + y² ≤ 1 approaches pi/4. The points are generated and
    counted in the executors (``spark.range`` + ``rand``); only the count reaches the driver.
    With a ``seed`` the result is reproducible (for the same cluster parallelism); without one
    every call draws new points.

    Example: ``pi(spark, samples=200_000, seed=1)`` → ``{"pi": 3.14..., "samples": 200000,
    "inside": 157...}``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")

    # x and y need independent generators: rand(s) with the same s in two columns would give
    # x == y. Derive two seeds from the caller's (or a fresh random) seed on the driver.
    rng = random.Random(seed)
    x, y = F.rand(rng.getrandbits(62)), F.rand(rng.getrandbits(62))

    inside = spark.range(samples).where(x * x + y * y <= 1.0).count()
    return {"pi": 4.0 * inside / samples, "samples": samples, "inside": inside}
