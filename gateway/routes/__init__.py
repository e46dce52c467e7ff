"""One module per HTTP resource; ``ROUTE_TABLES`` lists them for ``create_app``."""
