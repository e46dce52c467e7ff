"""Customer churn, from training to real-time scoring: one module, three deployment contexts.

``serve`` deploys its three functions (examples/deploy.toml):

- ``churn_train`` (a Spark context, on demand or nightly): generates a customer table with
  Spark, computes the features with Spark (``mapInPandas`` over :func:`features`), fits a
  logistic regression with Spark MLlib and saves it to the model store. The model saved is its
  coefficients, plain data: scoring it needs numpy, not a JVM.
- ``churn_score`` (the ``scoring`` context, on the python engine): one customer's fields in, a
  churn probability out, in a few milliseconds, with the **same** :func:`features` and
  :func:`predict` code.
- ``churn_score_batch`` (a Spark context, nightly): the same two functions over a whole table,
  in Spark's executors (``mapInPandas``), written to Parquet.

Example calls (sync)::

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/churn_train/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{"customers": 20000}'
    → {"version": "9614...", "auc": 0.855..., "trainedRows": 16104, ...}

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/churn_score/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{"tenure_months": 3,
           "monthly_charges": 95.5, "support_calls": 4, "plan": "basic", "auto_pay": false}'
    → {"churnProbability": 0.976..., "model": "9614..."}
"""

import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from sparkgate import models

MODEL = "churn"
PLANS = ("basic", "standard", "pro")
CUSTOMER_FIELDS = ("tenure_months", "monthly_charges", "support_calls", "plan", "auto_pay")
FEATURES = ("tenure_years", "log_charges", "support_calls", "calls_per_year", "plan_standard",
            "plan_pro", "auto_pay")
# Where score_batch writes: one folder per output name, never a path a caller chooses. Not the
# process's temporary folder: a worker's is its own, removed when the worker stops.
OUTPUT_ROOT = "/tmp/sparkgate-examples/churn"
_OUTPUT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


# --- the code every context shares -------------------------------------------------------


def features(customers: Mapping[str, Any]) -> np.ndarray:
    """The model's inputs, one row per customer, from columns of customer fields (a pandas
    DataFrame, or a dict of equal-length sequences for one customer).

    Vectorised with numpy and elementwise only, so a customer's row is the same, bit for bit,
    whether it is computed alone or among a million.
    """
    tenure_years = np.asarray(customers["tenure_months"], dtype=np.float64) / 12.0
    charges = np.asarray(customers["monthly_charges"], dtype=np.float64)
    calls = np.asarray(customers["support_calls"], dtype=np.float64)
    plan = np.asarray(customers["plan"], dtype=object)
    unknown = sorted(set(plan.tolist()) - set(PLANS))
    if unknown:
        raise ValueError(f"plan: expected one of {', '.join(PLANS)}, got {unknown[0]!r}")
    columns = {
        "tenure_years": tenure_years,
        "log_charges": np.log1p(charges),
        "support_calls": calls,
        "calls_per_year": calls / np.maximum(tenure_years, 1.0 / 12.0),
        "plan_standard": (plan == "standard").astype(np.float64),
        "plan_pro": (plan == "pro").astype(np.float64),
        "auto_pay": np.asarray(customers["auto_pay"], dtype=bool).astype(np.float64),
    }
    return np.column_stack([columns[name] for name in FEATURES])


def predict(model: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """Churn probabilities of the rows of ``x`` (from :func:`features`) under ``model``.

    The linear term is summed feature by feature rather than by a matrix product, whose
    summation order (and so last bit) depends on how many rows it is given.
    """
    if tuple(model["features"]) != FEATURES:
        raise ValueError(f"model {MODEL!r} was trained on features {model['features']}, this "
                         f"code computes {list(FEATURES)}: train it again")
    logit = np.full(x.shape[0], model["intercept"], dtype=np.float64)
    for column, coefficient in enumerate(model["coefficients"]):
        logit += coefficient * x[:, column]
    return 1.0 / (1.0 + np.exp(-logit))


def customer_table(spark: SparkSession, customers: int, seed: int) -> DataFrame:
    """``customers`` made-up customers, the same ones for the same ``seed`` (and parallelism),
    with whether each churned, drawn from a hidden logistic model of their fields."""
    if isinstance(customers, bool) or not isinstance(customers, int) or customers <= 0:
        raise ValueError(f"customers must be a positive integer, got {customers!r}")
    draw = [F.rand(seed * 10 + k) for k in range(6)]
    table = spark.range(customers).select(
        F.col("id").alias("customer_id"),
        (F.floor(draw[0] * 72) + 1).cast("int").alias("tenure_months"),
        F.round(20 + draw[1] * 100, 2).alias("monthly_charges"),
        F.floor(draw[2] * draw[2] * 10).cast("int").alias("support_calls"),
        F.element_at(F.array(*map(F.lit, PLANS)), (F.floor(draw[3] * 3) + 1).cast("int"))
        .alias("plan"),
        (draw[4] < 0.6).alias("auto_pay"),
        draw[5].alias("_u"),
    )
    hidden_logit = (0.4 - 0.05 * F.col("tenure_months") + 0.015 * F.col("monthly_charges")
                    + 0.45 * F.col("support_calls") + 0.5 * (F.col("plan") == "basic").cast("int")
                    - 0.7 * F.col("auto_pay").cast("int"))
    churned = F.col("_u") < 1 / (1 + F.exp(-hidden_logit))
    return table.withColumn("churned", churned.cast("double")).drop("_u")


# --- the three deployment contexts -------------------------------------------------------


def train(spark: SparkSession, customers: int = 20_000, seed: int = 1,
          live: bool = True) -> dict:
    """Fit the churn model on ``customers`` generated customers (80 % to train, 20 % to measure
    the AUC) and save it to the model store; ``live=False`` keeps it for a later promotion
    (``POST /v2/api/models/churn/live``)."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler

    def with_features(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        for batch in batches:
            out = pd.DataFrame(features(batch), columns=list(FEATURES), index=batch.index)
            out["churned"] = batch["churned"]
            yield out

    schema = ", ".join(f"{name} double" for name in (*FEATURES, "churned"))
    table = customer_table(spark, customers, seed).mapInPandas(with_features, schema)
    assembled = VectorAssembler(inputCols=list(FEATURES), outputCol="x").transform(table)
    fitting, holdout = assembled.randomSplit([0.8, 0.2], seed=seed)
    fitting = fitting.cache()
    fitted = LogisticRegression(featuresCol="x", labelCol="churned", maxIter=50).fit(fitting)
    auc = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction", labelCol="churned") \
        .evaluate(fitted.transform(holdout))
    trained_rows = fitting.count()
    fitting.unpersist()
    model: dict[str, Any] = {
        "features": list(FEATURES),
        "coefficients": [float(c) for c in fitted.coefficients.toArray()],
        "intercept": float(fitted.intercept),
        "auc": float(auc),
        "trainedRows": trained_rows,
        "seed": seed,
    }
    version = models.save(MODEL, model, live=live)
    return {"version": version, "live": live, "auc": model["auc"], "trainedRows": trained_rows,
            "coefficients": dict(zip(FEATURES, model["coefficients"], strict=True)),
            "intercept": model["intercept"]}


def score(tenure_months: int, monthly_charges: float, support_calls: int, plan: str,
          auto_pay: bool) -> dict:
    """One customer's probability of churning, by the live churn model; ``model`` names its
    version, so a caller can tell which model answered."""
    live = models.live(MODEL)
    customer = {"tenure_months": [tenure_months], "monthly_charges": [monthly_charges],
                "support_calls": [support_calls], "plan": [plan], "auto_pay": [auto_pay]}
    probability = predict(live.value, features(customer))[0]
    if not math.isfinite(probability):
        raise ValueError(f"no probability for these fields: {customer}")
    return {"churnProbability": float(probability), "model": live.version}


def score_batch(spark: SparkSession, customers: int = 10_000, seed: int = 2,
                output: str = "scores") -> dict:
    """Score ``customers`` generated customers (the same ones for the same ``seed``) with the
    live churn model, in Spark's executors, and write them with their probability to Parquet
    under the temporary folder (``.../sparkgate-examples/churn/<output>``)."""
    if not isinstance(output, str) or not _OUTPUT_NAME.fullmatch(output):
        raise ValueError(f"output: expected a name of lowercase letters, digits, '_' and '-', "
                         f"got {output!r}")
    live = models.live(MODEL)
    model = live.value

    def scored(batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            batch["churn_probability"] = predict(model, features(batch))
            yield batch

    table = customer_table(spark, customers, seed).drop("churned")
    schema = StructType([*table.schema.fields, StructField("churn_probability", DoubleType())])
    path = os.path.join(OUTPUT_ROOT, output)
    table.mapInPandas(scored, schema).write.mode("overwrite").parquet(path)
    summary = spark.read.parquet(path).agg(
        F.count("*").alias("scored"),
        F.avg("churn_probability").alias("meanProbability"),
        F.sum((F.col("churn_probability") >= 0.5).cast("int")).alias("atRisk"),
    ).first()
    assert summary is not None
    return {**summary.asDict(), "output": path, "model": live.version}
