"""sparkgate: Spark and Python functions as a web service, speaking Hydrosphere Mist's HTTP API.

The one installed package. Its parts live in the repository's top-level folders and are mapped
here by setup.cfg's ``package_dir``: ``sparkgate.gateway`` (HTTP), ``sparkgate.jobs`` (the
domain: catalog, store, queue, settings), ``sparkgate.workers`` (warm engines),
``sparkgate.migrations`` and ``sparkgate.examples``. This folder holds what wires them together:
the command line (``cli``) and ``sparkgate serve`` (``serving``, ``embedded``, ``claims``).
"""
