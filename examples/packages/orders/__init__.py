"""An example package artifact: a function whose code spans several modules.

Zip the ``orders`` folder (``cd examples/packages && zip -r orders.zip orders``), upload
``orders.zip`` and create the function with ``"className": "orders.report.summary"`` — or
``"orders.summary"``, the name this ``__init__`` re-exports.
"""

from .report import summary

__all__ = ["summary"]
