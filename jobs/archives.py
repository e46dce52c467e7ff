"""Package artifacts (``.zip``, ``.egg``, ``.whl``): checked before anything is stored, and read
or unpacked only through the same checks, so a hostile archive is refused with the entry and
the rule it breaks instead of filling a disk or writing outside its folder.

Every limit is checked twice: from the central directory (what the archive declares), then
while the entries are decompressed (what they really hold), because headers can lie.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sparkgate.jobs.errors import InvalidArtifact

PACKAGE_SUFFIXES = (".zip", ".egg", ".whl")

# An archive may unpack to at most this many times the largest artifact that may be uploaded
# (max_artifact_bytes): 1 GiB with the default 100 MiB.
UNPACKED_RATIO = 10
MAX_ENTRIES = 10_000
# Source code deflates 3-10x; 100x is data made to be small (zeros): a bomb.
MAX_COMPRESSION_RATIO = 100
# Entries smaller than this may have any ratio: they cannot do harm.
RATIO_FLOOR_BYTES = 64 * 1024
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
_CHUNK = 64 * 1024
_ALLOWED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                    zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# Top-level names an archive may not bring: a worker runs every artifact in one interpreter,
# next to the standard library, Spark, mistpy and sparkgate itself.
RESERVED_NAMES = frozenset(sys.stdlib_module_names) | {"sparkgate", "pyspark", "py4j", "mistpy"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_EOCD = b"PK\x05\x06"
_LOCAL_HEADER = b"PK\x03\x04"


def is_package(name: str) -> bool:
    return name.endswith(PACKAGE_SUFFIXES)


@dataclass(frozen=True)
class ArchiveLimits:
    max_unpacked_bytes: int
    max_entries: int = MAX_ENTRIES
    max_ratio: int = MAX_COMPRESSION_RATIO

    @classmethod
    def for_artifact_bytes(cls, max_artifact_bytes: int) -> ArchiveLimits:
        return cls(max_unpacked_bytes=UNPACKED_RATIO * max_artifact_bytes)


@dataclass(frozen=True)
class Package:
    """A checked archive: the paths of its files (folders left out) and the source of its
    Python modules (the rest was read, checked and let go: it is not kept in memory)."""

    name: str
    paths: tuple[str, ...]
    sources: dict[str, bytes]

    def module_names(self) -> list[str]:
        return sorted(self.sources)

    def top_level_names(self) -> list[str]:
        """The importable names at the archive's root (packages and modules)."""
        return sorted(top_level_names(self.paths))


def top_level_names(paths: Iterable[str]) -> set[str]:
    """Packages (``mypkg/...``) and modules (``tool.py``) at the root of these archive paths."""
    names = set()
    for path in paths:
        first, inside, _ = path.partition("/")
        if first.startswith("__"):
            continue  # __pycache__, __init__.py at the root: nothing to import by name
        if inside and first.isidentifier():
            names.add(first)
        elif not inside and first.endswith(".py") and first[:-3].isidentifier():
            names.add(first[:-3])
    return names


def read_package(name: str, content: bytes, limits: ArchiveLimits) -> Package:
    """Check ``content`` as a package archive, every entry decompressed; its paths and Python
    sources. InvalidArtifact naming the entry and the rule otherwise."""
    sources: dict[str, bytes] = {}

    def keep(path: str) -> BinaryIO | None:
        return _Kept(sources, path) if path.endswith(".py") else None

    paths = _Checker(name).run(content, limits, keep)
    return Package(name, tuple(paths), sources)


def unpack(name: str, content: bytes, limits: ArchiveLimits, target: Path) -> None:
    """Write the checked archive's files under ``target`` (a new, empty directory) and nowhere
    else: every path is checked again against ``target``, and each file is created, never
    opened through a link or over a file already there. A refusal can leave files written
    before it: ``target`` is meant to be a temporary folder, removed on failure."""
    root = target.resolve()
    check = _Checker(name)

    def create(path: str) -> BinaryIO:
        destination = (root / path).resolve()
        if root not in destination.parents:
            raise check.error(path, "escapes", "would be written outside its folder")
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        return os.fdopen(fd, "wb")

    check.run(content, limits, create)


class _Kept(io.BytesIO):
    """An entry's bytes, stored in ``into[path]`` when closed."""

    def __init__(self, into: dict[str, bytes], path: str) -> None:
        super().__init__()
        self.into, self.path = into, path

    def close(self) -> None:
        if not self.closed:
            self.into[self.path] = self.getvalue()
        super().close()


class _Checker:
    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, entry: str | None, rule: str, message: str,
              **details: Any) -> InvalidArtifact:
        where = f"artifact {self.name!r}"
        if entry is not None:
            where += f": entry {entry!r}"
        return InvalidArtifact(f"{where} {message}" if entry is None else f"{where}: {message}",
                               {"artifact": self.name, "entry": entry, "rule": rule, **details})

    def run(self, content: bytes, limits: ArchiveLimits,
            sink: Callable[[str], BinaryIO | None]) -> list[str]:
        """Check the archive, decompress every file into ``sink(path)`` (None: count and
        drop), and return the files' paths."""
        with self.opened(content, limits) as archive:
            infos = self.directory(archive, limits)
            self.read_all(archive, infos, limits, sink)
        paths = [info.filename for info in infos]
        if not any(p.endswith(".py") for p in paths):
            raise self.error(None, "no_python",
                             "has no Python module (.py file); a package artifact holds the "
                             "code of its functions as source")
        return paths

    # -- the archive as a whole --------------------------------------------------------------

    def opened(self, content: bytes, limits: ArchiveLimits) -> zipfile.ZipFile:
        if not content.startswith(_LOCAL_HEADER):
            raise self.error(None, "not_a_zip",
                             "is not a zip archive: it does not start with a zip entry "
                             f"(expected bytes 'PK\\x03\\x04', got {content[:4]!r})")
        declared = self._declared_entries(content)
        if declared > limits.max_entries:
            raise self._too_many(declared, limits)
        try:
            return zipfile.ZipFile(io.BytesIO(content))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError,
                EOFError, struct.error) as exc:
            raise self.error(None, "not_a_zip",
                             f"is not a readable zip archive (truncated or corrupt): {exc}"
                             ) from None

    def _declared_entries(self, content: bytes) -> int:
        """The entry count of the end-of-directory record, read before zipfile parses (and
        holds in memory) a directory that may be huge."""
        at = content.rfind(_EOCD, max(0, len(content) - 65_557))
        if at < 0 or at + 22 > len(content):
            raise self.error(None, "not_a_zip",
                             "is not a readable zip archive (truncated or corrupt): it has no "
                             "end-of-directory record")
        (count,) = struct.unpack_from("<H", content, at + 10)
        return count  # 0xFFFF: ZIP64, more than the cap anyway

    def _too_many(self, count: int, limits: ArchiveLimits) -> InvalidArtifact:
        return self.error(None, "too_many_entries",
                          f"has {count:,} entries; the limit is {limits.max_entries:,}",
                          limit=limits.max_entries)

    def directory(self, archive: zipfile.ZipFile,
                  limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
        """The file entries, after checking every entry of the central directory."""
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise self._too_many(len(infos), limits)
        if not infos:
            raise self.error(None, "empty", "is an empty archive")
        seen: dict[str, str] = {}
        dirs: set[str] = set()
        files: list[zipfile.ZipInfo] = []
        total = 0
        for info in infos:
            path = self._path(info)
            self._entry(info, limits)
            self._unique(info.filename, path, seen)
            if info.is_dir():
                dirs.add(path)
                continue
            dirs.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
            files.append(info)
            total += info.file_size
            if total > limits.max_unpacked_bytes:
                raise self._unpacked(info.filename, total, limits)
        for info in files:
            if info.filename in dirs:
                raise self.error(info.filename, "duplicate",
                                 "is both a file and a directory in the archive")
        self._reserved(files)
        return files

    def _reserved(self, files: list[zipfile.ZipInfo]) -> None:
        for info in files:
            top = top_level_names([info.filename])
            if top & RESERVED_NAMES:
                name = top.pop()
                raise self.error(info.filename, "reserved_name",
                                 f"makes a top-level module {name!r}, which would shadow the "
                                 f"{name!r} that workers already use (standard library, Spark "
                                 "or sparkgate); put the code in a package of another name")

    def _unpacked(self, entry: str, total: int, limits: ArchiveLimits) -> InvalidArtifact:
        return self.error(entry, "unpacked_size",
                          f"brings the unpacked size to {total:,} bytes; the limit is "
                          f"{limits.max_unpacked_bytes:,} ({UNPACKED_RATIO} x "
                          "max_artifact_bytes)", limit=limits.max_unpacked_bytes)

    # -- one entry of the directory ----------------------------------------------------------

    def _path(self, info: zipfile.ZipInfo) -> str:
        """The entry's name checked as a relative path inside the archive; without the
        trailing ``/`` of a directory."""
        name = info.filename
        # zipfile turns the raw name's NUL into the end of the name; the raw name still has it.
        raw = info.orig_filename
        if not name or "\x00" in raw or any(ord(c) < 0x20 or c == "\x7f" for c in raw):
            raise self.error(raw, "bad_name", "has an empty name or control characters in it")
        if "\\" in raw:
            raise self.error(raw, "backslash",
                             "has a backslash in its name; zip paths use '/' and a backslash "
                             "is a path separator on Windows (a way to hide '..')")
        if raw.startswith("/") or _DRIVE.match(raw):
            raise self.error(raw, "absolute_path",
                             "is an absolute path; entries must be relative to the archive root")
        path = name[:-1] if info.is_dir() else name
        parts = path.split("/")
        if ".." in parts:
            raise self.error(raw, "parent_component",
                             "has a '..' component: it would be written outside its folder")
        if any(p in ("", ".") for p in parts):
            raise self.error(raw, "bad_name", "has an empty or '.' path component")
        if len(name.encode()) > MAX_NAME_BYTES or any(
                len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
            raise self.error(raw[:80] + "…", "bad_name",
                             f"has a name longer than {MAX_NAME_BYTES} bytes or a component "
                             f"longer than {MAX_COMPONENT_BYTES}")
        return path

    def _entry(self, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise self.error(name, "symlink",
                             "is a symbolic link; links are refused (they can point anywhere)")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise self.error(name, "special_file",
                             f"is a special file (mode {oct(stat.S_IFMT(mode))}); only files "
                             "and directories are accepted")
        if info.flag_bits & 0x1:
            raise self.error(name, "encrypted", "is encrypted; upload an unencrypted archive")
        if info.compress_type not in _ALLOWED_METHODS:
            raise self.error(name, "unsupported_compression",
                             f"uses compression method {info.compress_type}; expected one of "
                             f"{', '.join(_ALLOWED_METHODS.values())}")
        if info.file_size > RATIO_FLOOR_BYTES and (
                info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            ratio = info.file_size / max(info.compress_size, 1)
            raise self.error(name, "compression_ratio",
                             f"declares {info.file_size:,} bytes from {info.compress_size:,} "
                             f"compressed (ratio {ratio:,.0f}); the limit is "
                             f"{limits.max_ratio} (a zip bomb?)", limit=limits.max_ratio)

    def _unique(self, entry: str, path: str, seen: dict[str, str]) -> None:
        key = path.casefold()
        if key in seen:
            same = seen[key] == path
            raise self.error(entry, "duplicate",
                             "appears twice in the archive" if same else
                             f"differs only in case from entry {seen[key]!r}")
        seen[key] = path

    # -- reading, with the limits enforced on the real bytes ---------------------------------

    def read_all(self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo],
                 limits: ArchiveLimits, sink: Callable[[str], BinaryIO | None]) -> None:
        total = 0
        for info in infos:
            out = sink(info.filename)
            try:
                total += self._read(archive, info, limits, out)
            finally:
                if out is not None:
                    out.close()
            if total > limits.max_unpacked_bytes:
                raise self._unpacked(info.filename, total, limits)

    def _read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits,
              out: BinaryIO | None) -> int:
        """The entry's real size, its bytes written to ``out``; stops at the first byte past
        what its header declares."""
        size = 0
        try:
            with archive.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    size += len(chunk)
                    if size > info.file_size or size > limits.max_unpacked_bytes:
                        raise self._lies(info, size)
                    if out is not None:
                        out.write(chunk)
        except InvalidArtifact:
            raise
        except Exception as exc:  # zipfile, zlib, bz2, lzma: whatever broken data raises
            rule = "checksum" if "CRC" in str(exc) else "corrupt"
            raise self.error(info.filename, rule,
                             f"cannot be read (truncated, corrupt, or its header lies about its "
                             f"size): {exc}") from None
        if size != info.file_size:
            raise self._lies(info, size)
        return size

    def _lies(self, info: zipfile.ZipInfo, size: int) -> InvalidArtifact:
        more = "at least " if size > info.file_size else ""
        return self.error(info.filename, "size_mismatch",
                          f"declares {info.file_size:,} bytes but holds {more}{size:,}: its "
                          "header lies about its size")
