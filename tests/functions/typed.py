"""Every argument type sparkgate supports, for validation tests."""

from typing import Any, Optional

from pyspark.sql import SparkSession


def typed(
    spark: SparkSession,
    count: int,
    ratio: float,
    label: str,
    enabled: bool,
    items: list[int],
    weights: dict[str, float],
    note: Optional[str] = None,
    anything: Any = None,
    nested: list[dict[str, list[str]]] = [],  # noqa: B006 — read by the AST, never mutated
) -> dict:
    return {"count": count, "ratio": ratio, "label": label, "enabled": enabled,
            "items": items, "weights": weights, "note": note, "anything": anything,
            "nested": nested}
