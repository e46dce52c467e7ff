"""One module per scenario; each has ``run(bench) -> list[Row]`` (and may ``prepare``)."""
