"""Plain functions that save and load a model through sparkgate.models, as a training job and
a scoring function do."""

from sparkgate import models


def train(factor: int) -> str:
    return models.save("multiplier", {"factor": factor})


def score(x: int) -> int:
    return models.load("multiplier")["factor"] * x
