"""A plain function: no Spark handle, so every parameter is an argument and it runs on any
engine. Nothing here imports pyspark."""


def add(x: int, y: int = 1) -> int:
    return x + y
