"""The HTTP gateway: Mist's v2 API over aiohttp, and the ``sparkgate`` command line."""
