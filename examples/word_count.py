"""Count words in a text (or a list of lines) with the Spark DataFrame API.

Example call (sync)::

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/word_count/jobs?force=true' \\
         -H 'Content-Type: application/json' \\
         -d '{"text": "To be, or not to be: that is the question.", "top": 3}'

    → {"total_words": 10, "distinct_words": 8,
       "top": [{"word": "be", "count": 2}, {"word": "to", "count": 2},
               {"word": "is", "count": 1}]}
"""

from typing import Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

# Java regex: one or more non-word characters, Unicode-aware ((?U)), so "café" stays one word.
_NON_WORD = r"(?U)\W+"


def word_count(
    spark: SparkSession,
    # Optional[X] (not X | None) is the spelling sparkgate's argument schema documents.
    text: Optional[str] = None,
    lines: Optional[list[str]] = None,
    top: int = 10,
) -> dict:
    """Count the words of ``text`` or of ``lines`` (give exactly one of them).

    Words are lowercased and split on runs of non-word characters (punctuation, spaces), so
    "Don't" counts as "don" and "t". The splitting, counting and ranking run in Spark; only the
    ``top`` most frequent words (count descending, then word ascending) and two totals come back.

    Example: ``word_count(spark, lines=["a b", "b c b"], top=2)`` →
    ``{"total_words": 5, "distinct_words": 3,
    "top": [{"word": "b", "count": 3}, {"word": "a", "count": 1}]}``.
    """
    if (text is None) == (lines is None):
        raise ValueError("give exactly one of 'text' or 'lines', not both and not neither")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if lines is not None and (
        not isinstance(lines, list) or not all(isinstance(line, str) for line in lines)
    ):
        raise ValueError("lines must be a list of strings")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"top must be a non-negative integer, got {top!r}")

    rows = [(text,)] if lines is None else [(line,) for line in lines]
    words = (
        spark.createDataFrame(rows, "line string")
        .select(F.explode(F.split(F.lower("line"), _NON_WORD)).alias("word"))
        .where(F.col("word") != "")  # split leaves "" at the edges of leading/trailing punctuation
    )
    counts = words.groupBy("word").count()

    # An aggregation without groupBy is exactly one row.
    (totals,) = counts.agg(
        F.coalesce(F.sum("count"), F.lit(0)).alias("total"),
        F.count("*").alias("distinct"),
    ).collect()
    ranked = counts.orderBy(F.desc("count"), F.asc("word")).limit(top).collect()

    return {
        "total_words": int(totals["total"]),
        "distinct_words": int(totals["distinct"]),
        "top": [{"word": row["word"], "count": int(row["count"])} for row in ranked],
    }
