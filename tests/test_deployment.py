"""Deploying: artifacts are checked before they are stored; a function's schema always
matches the code of its artifact."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest

from sparkgate.embedded import deploy_examples
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.deployment import build_function, upload_artifact
from sparkgate.jobs.errors import BadRequest, Conflict, InvalidArtifact, WrongEngine
from sparkgate.jobs.signatures.model import Signature

V1 = b"def f(spark, n: int):\n    return n\n"
V2 = b"def f(spark, n: int, label: str = 'x'):\n    return n\n"
WITHOUT_F = b"def g(spark):\n    return 1\n"
PLAIN = b"def f(x: int):\n    return x\n\n\ndef g(spark):\n    return 1\n"


def deploy_f(catalog: Catalog) -> None:
    upload_artifact(catalog, "code.py", V1, replace=False)
    catalog.create_function(build_function(catalog, "f", "code.py", "f", "default", [], True))


def params_of(catalog: Catalog, name: str) -> list[str]:
    signature = Signature.from_dict(catalog.get_function(name).signature)
    return [p.name for p in signature.params]


def test_replacing_an_artifact_refreshes_its_functions_schemas(catalog: Catalog):
    deploy_f(catalog)
    assert params_of(catalog, "f") == ["n"]
    upload_artifact(catalog, "code.py", V2, replace=True)
    assert params_of(catalog, "f") == ["n", "label"]


def test_a_replacement_that_breaks_a_function_stores_nothing(catalog: Catalog):
    deploy_f(catalog)
    before = catalog.get_artifact("code.py")
    with pytest.raises(InvalidArtifact, match="does not fit function 'f'"):
        upload_artifact(catalog, "code.py", WITHOUT_F, replace=True)
    assert catalog.get_artifact("code.py") == before
    assert params_of(catalog, "f") == ["n"]


def test_a_function_is_placed_by_the_engine_of_its_default_context(catalog: Catalog):
    catalog.save_context(replace(Context.from_defaults("scoring", catalog.context_defaults),
                                 engine="python"))
    upload_artifact(catalog, "code.py", PLAIN, replace=False)
    catalog.create_function(build_function(catalog, "f", "code.py", "f", "scoring", [], True))
    with pytest.raises(WrongEngine, match="function 'g' takes a SparkSession"):
        build_function(catalog, "g", "code.py", "g", "scoring", [], True)
    # New code that makes f a Spark function would strand it in its python context.
    with pytest.raises(WrongEngine, match="context 'scoring' runs on engine 'python'"):
        upload_artifact(catalog, "code.py", V1, replace=True)
    assert params_of(catalog, "f") == ["x"]


def test_same_name_without_replace_is_a_conflict(catalog: Catalog):
    upload_artifact(catalog, "code.py", V1, replace=False)
    with pytest.raises(Conflict):
        upload_artifact(catalog, "code.py", V2, replace=False)


def test_identical_content_under_two_names_shares_one_blob(catalog: Catalog):
    a = upload_artifact(catalog, "a.py", V1, replace=False)
    b = upload_artifact(catalog, "b.py", V1, replace=False)
    assert a.sha1 == b.sha1
    assert catalog.artifact_content(a.sha1) == V1


@pytest.mark.parametrize(("name", "content", "message"), [
    ("code.txt", V1, "expected a file ending in .py"),
    ("code.py", b"def f(:\n", "syntax error at line 1"),
    ("code.py", b"\xff\xfe", "not UTF-8"),
    ("code.py", b"x = 1\x00\n", "syntax error"),
])
def test_unusable_artifacts_are_refused(catalog: Catalog, name, content, message):
    with pytest.raises(InvalidArtifact, match=message):
        upload_artifact(catalog, name, content, replace=False)
    assert catalog.list_artifacts() == []


def test_a_function_needs_its_artifact_and_context(catalog: Catalog):
    with pytest.raises(BadRequest, match=re.escape("artifact 'none.py' does not exist")):
        build_function(catalog, "f", "none.py", "f", "default", [], True)
    upload_artifact(catalog, "code.py", V1, replace=False)
    with pytest.raises(BadRequest, match="context 'gpu' does not exist"):
        build_function(catalog, "f", "code.py", "f", "gpu", [], True)
    unchecked = build_function(catalog, "f", "code.py", "missing", "default", ["t"], False)
    assert unchecked.signature is None and unchecked.tags == ["t"]


def test_serve_deploys_every_example_to_a_spark_default_context(catalog: Catalog):
    assert deploy_examples(catalog) == ["churn_score", "churn_score_batch", "churn_train",
                                        "mist_multiply", "pi", "rate_windows",
                                        "rate_windows_latest", "simulate_portfolio",
                                        "word_count"]
    scoring = catalog.get_context("scoring")
    assert (scoring.engine, scoring.max_jobs) == ("python", 8)
    assert catalog.get_function("churn_score").default_context == "scoring"
    assert catalog.get_function("churn_train").class_name == "train"


def test_an_operators_changes_to_an_example_context_stay(catalog: Catalog):
    deploy_examples(catalog)
    catalog.update_context(replace(catalog.get_context("scoring"), max_jobs=3))
    deploy_examples(catalog)
    assert catalog.get_context("scoring").max_jobs == 3


def test_a_python_default_context_leaves_the_spark_examples_out_saying_why(
        engine, context_defaults, caplog):
    catalog = Catalog(engine, replace(context_defaults, engine="python"))
    with caplog.at_level(logging.INFO, logger="sparkgate.embedded"):
        assert deploy_examples(catalog) == ["churn_score"]  # its context is python anyway
    assert "example pi not deployed: defaultContext: function 'pi' takes a SparkSession" \
        in caplog.text
    assert [f.name for f in catalog.list_functions()] == ["churn_score"]
