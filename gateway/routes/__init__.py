"""One module per HTTP resource, each declaring its routes (``endpoints``); gateway/app.py
lists them in ``ENDPOINTS``."""
