"""A plain function that logs through ``logging`` (tests/test_metrics.py: JSON log lines)."""

import logging


def noisy(n: int) -> int:
    logging.getLogger("noisy").warning("noisy says %d", n)
    return n
