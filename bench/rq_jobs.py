"""The no-op job of the bare-RQ baseline (scenario 4): what a stock SimpleWorker runs."""


def noop(value=None):
    return value
