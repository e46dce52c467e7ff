"""Argument schemas of user functions, read from source without running it.

The gateway must publish a function's arguments (Mist's ``execute`` map, JSON Schema) and check
a job's arguments before queueing it, yet user code may run only in workers. So the schema comes
from the artifact's Python source through ``ast``: type hints and literal defaults of a plain
function, or the ``mistpy`` decorators of a function written for Mist.

``model``: the signature; ``reading``: finding the function in a file or a package artifact,
which ``plain`` (a def's hints and defaults) or ``mist`` (mistpy's decorators) then reads, with
``hints`` for type hints and default values, and ``classes`` for the classes they name (through
a package's ``imports``); ``validation``: a job's arguments checked.
"""
