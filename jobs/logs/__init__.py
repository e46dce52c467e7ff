"""Job logs, in one place: the line (``lines``), Mist's text format (``mist_text``), and the
capture of each job thread's output in a worker (``capture``, with ``buffers`` and
``routing``). Workers capture and store lines; the gateway serves them. Nothing here imports
the gateway or the workers.
"""
