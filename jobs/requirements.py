"""An artifact's Python requirements: pip requirement lines, checked and normalized, and the id
of the environment that holds them (docs/environments.md).

Only requirement specifiers are accepted (``name[extra]>=1.0; marker``): an option line
(``-e``, ``--index-url``, ``-r``) or a URL or path would let an uploader choose where code is
fetched from, which is the operator's setting (``environment_index_url``...), not theirs.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import sys
import zipfile
from collections.abc import Iterable
from typing import NoReturn

from packaging.requirements import InvalidRequirement, Requirement

from sparkgate.jobs.errors import BadRequest

# Hex digits of an environment id: 64 bits, plenty for the sets one installation builds.
ENVIRONMENT_ID_LENGTH = 16


def parse_requirements(text: str, field: str = "requirements") -> tuple[str, ...]:
    """The requirement lines of ``text`` (one a line; blank lines and ``#`` comments ignored),
    normalized and sorted; BadRequest naming ``field`` and the first bad line."""
    return normalized(_lines(text), field)


def normalized(lines: Iterable[str], field: str = "requirements") -> tuple[str, ...]:
    """``lines``, each checked and written as packaging writes it, without duplicates, sorted:
    the same set in any order or spacing is one environment."""
    return tuple(sorted({_checked(line, field) for line in lines if line.strip()}))


def requirements_text(lines: Iterable[str]) -> str | None:
    """What the artifact row stores: the normalized lines, one a line; None for none."""
    return "\n".join(lines) or None


def environment_id(lines: Iterable[str], python: str | None = None) -> str | None:
    """The id of the environment for these (normalized) lines on ``python`` (major.minor; by
    default this interpreter's); None: no requirements, the base environment."""
    text = requirements_text(lines)
    if text is None:
        return None
    digest = hashlib.sha256(f"python {python or python_version()}\n{text}".encode())
    return digest.hexdigest()[:ENVIRONMENT_ID_LENGTH]


def wheel_requirements(content: bytes) -> tuple[str, ...]:
    """A wheel's own ``Requires-Dist`` lines (from its METADATA), normalized; those of its
    optional extras left out. ``content`` is a wheel already checked as an archive."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = [n for n in archive.namelist()
                 if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            return ()
        text = archive.read(names[0]).decode("utf-8", "replace")
    lines = email.parser.Parser().parsestr(text, headersonly=True).get_all("Requires-Dist")
    return normalized((line for line in lines or () if not _for_an_extra(line)),
                      "Requires-Dist")


def _for_an_extra(line: str) -> bool:
    try:
        marker = Requirement(line).marker
    except InvalidRequirement:
        return False  # refused with its line by normalized()
    return marker is not None and "extra" in str(marker)


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _lines(text: str) -> list[str]:
    # A comment starts at " #" or at the line's start, as in a requirements file; a "#" inside
    # a URL is refused later anyway.
    return [line.split(" #")[0].strip() for line in text.splitlines()
            if not line.lstrip().startswith("#")]


def _checked(line: str, field: str) -> str:
    line = line.strip()
    if line.startswith("-"):
        _refuse(field, line, "options (-e, -r, --index-url...) are not accepted: the operator "
                "sets where packages come from")
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        _refuse(field, line, f"not a requirement specifier ({' '.join(str(exc).split())})")
    if requirement.url is not None:
        _refuse(field, line, "URLs and paths are not accepted: name a package and version "
                "from the operator's index")
    return str(requirement)


def _refuse(field: str, line: str, why: str) -> NoReturn:
    raise BadRequest(f"{field}: {line!r}: {why}", {"field": field, "got": line})
