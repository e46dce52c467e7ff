"""The example functions in ``examples/``, run in the test process's SparkSession."""

import ast
import importlib.util
import json
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLAIN_EXAMPLES = ["pi", "word_count", "simulate_portfolio"]


def load(name: str):
    """Import ``examples/<name>.py`` by path (the examples are artifacts, not a package)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sparkgate_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


# --- what the gateway reads without importing: names and literal defaults ---


@pytest.mark.parametrize("name", PLAIN_EXAMPLES)
def test_plain_example_schema_is_readable_with_ast(name):
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"examples/{name}.py must define {name}()"
    args = functions[name].args
    assert args.args[0].arg == "spark"
    assert args.args[0].annotation is not None and ast.unparse(args.args[0].annotation) == (
        "SparkSession"
    )
    for parameter in args.args[1:]:
        assert parameter.annotation is not None, f"{name}: {parameter.arg} has no type hint"
    for default in args.defaults:
        ast.literal_eval(default)  # raises on anything but a plain literal


# --- pi ---


def test_pi_estimates_pi(spark):
    result = load("pi")(spark, samples=200_000, seed=7)
    assert set(result) == {"pi", "samples", "inside"}
    assert result["samples"] == 200_000
    assert isinstance(result["inside"], int)
    assert result["pi"] == 4 * result["inside"] / 200_000
    assert abs(result["pi"] - math.pi) < 0.05


def test_pi_is_reproducible_with_a_seed(spark):
    pi = load("pi")
    first = pi(spark, samples=20_000, seed=11)
    assert pi(spark, samples=20_000, seed=11) == first
    assert pi(spark, samples=20_000, seed=12)["inside"] != first["inside"]


@pytest.mark.parametrize("samples", [0, -5])
def test_pi_rejects_non_positive_samples(spark, samples):
    with pytest.raises(ValueError, match="samples"):
        load("pi")(spark, samples=samples)


# --- word_count ---


def test_word_count_text(spark):
    result = load("word_count")(spark, text="The cat and the hat. THE END, the end!\n", top=3)
    assert result == {
        "total_words": 9,
        "distinct_words": 5,
        "top": [
            {"word": "the", "count": 4},
            {"word": "end", "count": 2},
            {"word": "and", "count": 1},  # ties (and, cat, hat) ordered by word
        ],
    }


def test_word_count_lines_ties_and_unicode(spark):
    word_count = load("word_count")
    lines = ["b a", "a, c!", "", "  c b...", "Café CAFÉ"]
    assert word_count(spark, lines=lines) == {
        "total_words": 8,
        "distinct_words": 4,
        "top": [
            {"word": "a", "count": 2},
            {"word": "b", "count": 2},
            {"word": "c", "count": 2},
            {"word": "café", "count": 2},
        ],
    }
    assert word_count(spark, lines=lines, top=0)["top"] == []
    assert word_count(spark, lines=[]) == {"total_words": 0, "distinct_words": 0, "top": []}


@pytest.mark.parametrize(
    "arguments", [{}, {"text": "a b", "lines": ["a b"]}], ids=["neither", "both"]
)
def test_word_count_needs_exactly_one_input(spark, arguments):
    with pytest.raises(ValueError, match="exactly one of 'text' or 'lines'"):
        load("word_count")(spark, **arguments)


# --- simulate_portfolio ---

RISKY = {
    "weights": {"EQUITY": 0.6, "BONDS": 0.4},
    "expected_returns": {"EQUITY": 0.08, "BONDS": 0.03},
    "volatilities": {"EQUITY": 0.25, "BONDS": 0.08},
}


def test_simulate_portfolio_risky(spark):
    simulate = load("simulate_portfolio")
    result = simulate(spark, **RISKY, days=10, scenarios=5_000, seed=3)

    assert json.loads(json.dumps(result)) == result
    assert (result["initial_value"], result["days"], result["scenarios"]) == (1e6, 10, 5_000)
    assert list(result["percentiles"]) == ["1.0", "5.0", "50.0", "95.0", "99.0"]
    values = list(result["percentiles"].values())
    assert values == sorted(values) and len(set(values)) == len(values)

    var95, var99 = result["value_at_risk"]["95"], result["value_at_risk"]["99"]
    assert var99 >= var95 > 0
    assert var95 == pytest.approx(1e6 - result["percentiles"]["5.0"])
    assert var99 == pytest.approx(1e6 - result["percentiles"]["1.0"])
    assert result["expected_shortfall_95"] >= var95

    # E[final] = sum of w * V * exp(mu * days / 252); the sd of the mean here is ~0.05 %.
    horizon = 10 / 252
    expected_mean = 1e6 * (0.6 * math.exp(0.08 * horizon) + 0.4 * math.exp(0.03 * horizon))
    assert result["mean_final_value"] == pytest.approx(expected_mean, rel=5e-3)
    # Normal approximation of the 10-day VaR95: 1.645 sd - mean gain (about 48k); within 20 %.
    sd = 1e6 * math.hypot(0.6 * 0.25, 0.4 * 0.08) * math.sqrt(horizon)
    assert var95 == pytest.approx(1.645 * sd - (expected_mean - 1e6), rel=0.2)

    assert simulate(spark, **RISKY, days=10, scenarios=5_000, seed=3) == result


def test_simulate_portfolio_without_volatility_is_the_closed_form(spark):
    result = load("simulate_portfolio")(
        spark,
        weights={"A": 0.5, "B": 0.5},
        expected_returns={"A": 0.10, "B": -0.05},
        volatilities={"A": 0.0, "B": 0.0},
        initial_value=250_000.0,
        days=21,
        scenarios=500,
        percentiles=[10.0, 90.0],
    )
    grown = 250_000.0 * (0.5 * math.exp(0.10 * 21 / 252) + 0.5 * math.exp(-0.05 * 21 / 252))
    assert list(result["percentiles"]) == ["10.0", "90.0"]
    for value in [*result["percentiles"].values(), result["mean_final_value"]]:
        assert value == pytest.approx(grown, rel=1e-12)
    loss = 250_000.0 - grown
    assert result["value_at_risk"]["95"] == pytest.approx(loss, rel=1e-9)
    assert result["value_at_risk"]["99"] == pytest.approx(loss, rel=1e-9)
    assert result["expected_shortfall_95"] == pytest.approx(loss, rel=1e-9)


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"weights": {"EQUITY": 0.6, "BONDS": 0.3}}, r"weights must sum to 1"),
        ({"weights": {"EQUITY": 1.2, "BONDS": -0.2}}, r"weights\['BONDS'\] must be positive"),
        ({"volatilities": {"EQUITY": 0.2}}, r"volatilities must name the same assets"),
        ({"expected_returns": {"EQUITY": 0.1, "CASH": 0.0}}, r"expected_returns must name"),
        ({"volatilities": {"EQUITY": -0.1, "BONDS": 0.1}}, r"volatilities\['EQUITY'\]"),
        ({"days": 0}, r"days must be a positive integer"),
        ({"scenarios": -1}, r"scenarios must be a positive integer"),
        ({"initial_value": 0.0}, r"initial_value must be positive"),
        ({"percentiles": [5.0, 100.0]}, r"percentiles must each be strictly between 0 and 100"),
    ],
)
def test_simulate_portfolio_rejects_bad_input(spark, change, argument):
    with pytest.raises(ValueError, match=argument):
        load("simulate_portfolio")(spark, **{**RISKY, **change})


# --- a Mist function, called the way sparkgate calls it: every argument by keyword ---


def test_mist_multiply(spark):
    mist_multiply = load("mist_multiply")
    assert [a.name for a in mist_multiply.args_def] == ["numbers", "multiplier"]
    sc = spark.sparkContext
    assert mist_multiply(sc, numbers=[1, 2, 3], multiplier=2) == {"result": [2, 4, 6]}
    assert mist_multiply(sc, numbers=[5, -1, 0], multiplier=3) == {"result": [15, -3, 0]}
    assert mist_multiply(sc, numbers=[4, 5]) == {"result": [8, 10]}
