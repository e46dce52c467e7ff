"""examples/churn.py in this process, as ``sparkgate run --local`` and ``sparkgate.testing`` run
it: trained with Spark MLlib, scored one customer at a time and in batch by the same code.
The flow through a real ``serve`` (train, promote, score, roll back) is in test_model_rollout."""

from __future__ import annotations

import pickle
import re
import shutil
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from sparkgate import models
from sparkgate.jobs import tables as t
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.errors import InvalidArguments, NotFound
from sparkgate.jobs.migrate import upgrade
from sparkgate.jobs.models import ModelStore
from sparkgate.testing import run_function
from tests.conftest import EXAMPLES_DIR

CHURN = EXAMPLES_DIR / "churn.py"
CUSTOMER = {"tenure_months": 3, "monthly_charges": 95.5, "support_calls": 4, "plan": "basic",
            "auto_pay": False}


@pytest.fixture(scope="module")
def store(sqlite_url: str) -> Iterator[ModelStore]:
    """This module's models, in a store of their own."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        for table in (t.models, t.model_versions, t.model_blobs):
            conn.execute(table.delete())
    models.use(ModelStore(engine))
    yield ModelStore(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def trained(spark, store: ModelStore) -> dict:
    return run_function(CHURN, "train", {"customers": 4000, "seed": 3})


def test_training_fits_a_useful_model_and_makes_it_live(trained: dict, store: ModelStore):
    assert store.live_version("churn") == trained["version"]
    assert trained["live"] is True
    # The hidden model: longer tenure and auto pay lower the risk, support calls raise it.
    assert trained["coefficients"]["tenure_years"] < 0
    assert trained["coefficients"]["auto_pay"] < 0
    assert trained["coefficients"]["support_calls"] > 0
    assert 0.7 < trained["auc"] < 1.0
    assert 3000 < trained["trainedRows"] < 3500


def test_one_customer_and_the_batch_get_the_same_probability_row_for_row(trained: dict):
    output = f"test-{uuid.uuid4().hex[:12]}"
    batch = run_function(CHURN, "score_batch", {"customers": 300, "seed": 9, "output": output})
    assert (batch["scored"], batch["model"]) == (300, trained["version"])
    assert batch["output"] == f"/tmp/sparkgate-examples/churn/{output}"
    rows = pd.read_parquet(batch["output"]).sort_values("customer_id")
    shutil.rmtree(batch["output"])
    assert len(rows) == 300 and rows["plan"].nunique() == 3
    for row in rows.to_dict("records"):
        fields = {name: row[name] for name in CUSTOMER}
        fields = {k: (v.item() if hasattr(v, "item") else v) for k, v in fields.items()}
        one = run_function(CHURN, "score", fields)
        assert one == {"churnProbability": row["churn_probability"],
                       "model": trained["version"]}, row
    assert batch["atRisk"] == int((rows["churn_probability"] >= 0.5).sum()) > 0
    assert batch["meanProbability"] == pytest.approx(rows["churn_probability"].mean())


def test_scoring_names_a_bad_field(trained: dict):
    with pytest.raises(InvalidArguments, match="support_calls: expected integer, got string"):
        run_function(CHURN, "score", {**CUSTOMER, "support_calls": "four"})
    with pytest.raises(ValueError, match="plan: expected one of basic, standard, pro, got 'gold'"):
        run_function(CHURN, "score", {**CUSTOMER, "plan": "gold"})


def test_scoring_names_a_missing_or_mismatched_model(tmp_path, store: ModelStore,
                                                     monkeypatch: pytest.MonkeyPatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    empty = ModelStore(make_engine(url))
    monkeypatch.setattr(models, "_models", None)
    models.use(empty)
    try:
        with pytest.raises(NotFound, match="model 'churn' does not exist"):
            run_function(CHURN, "score", CUSTOMER)
        empty.save("churn", pickle.dumps({"features": ["x"], "coefficients": [1.0],
                                          "intercept": 0.0}), "local", live=False)
        with pytest.raises(LookupError, match="model 'churn' has no live version"):
            run_function(CHURN, "score", CUSTOMER)
        empty.promote("churn", empty.versions("churn")[0].sha256)
        with pytest.raises(ValueError, match=re.escape("was trained on features ['x']")):
            run_function(CHURN, "score", CUSTOMER)
    finally:
        empty.engine.dispose()
        models.use(store)


def test_batch_output_is_a_name_under_its_folder_never_a_path(store: ModelStore):
    for output in ("../../etc", "/tmp/x", "a/b", ""):
        with pytest.raises(ValueError, match="output: expected a name"):
            run_function(CHURN, "score_batch", {"output": output})

