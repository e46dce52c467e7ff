"""Booleans written as text, read one way everywhere: settings (``SPARKGATE_...=on``), query
parameters (``?force=yes``) and Mist's context fields (``"true"``). Each caller words its own
error from the ``ValueError`` raised here.
"""

from __future__ import annotations

from typing import Any

#: sparkgate's own inputs (settings, query parameters) take these, in any case, spaces around.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
#: Mist's JSON fields take only these (in any case, nothing around): its API says no more.
STRICT_WORDS = ("true", "false")


def parse_bool(raw: Any, *, strict: bool = False) -> bool:
    """``raw`` as a bool: a bool as it is; else its text, looked up in ``TRUE_WORDS`` and
    ``FALSE_WORDS`` or, ``strict``, in ``STRICT_WORDS`` only."""
    if isinstance(raw, bool):
        return raw
    if strict:
        text = raw.lower() if isinstance(raw, str) else None
        if text in STRICT_WORDS:
            return text == "true"
    else:
        text = str(raw).strip().lower()
        if text in TRUE_WORDS or text in FALSE_WORDS:
            return text in TRUE_WORDS
    raise ValueError(f"expected true or false, got {raw!r}")
