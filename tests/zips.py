"""Zip archives for tests, honest and hostile: built with zipfile, then patched byte by byte
where zipfile would refuse to write the lie (NUL in a name, sizes that do not match)."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
from pathlib import Path

EXAMPLE_PACKAGES = Path(__file__).resolve().parent.parent / "examples" / "packages"


def make_zip(files: dict[str, bytes] | list[tuple[str, bytes]],
             method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An archive of ``files`` (name -> content; a list allows duplicate names)."""
    items = files.items() if isinstance(files, dict) else files
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: we want them
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, content in items:
                archive.writestr(name, content)
    return buffer.getvalue()


def with_symlink(files: dict[str, bytes], link: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        info = zipfile.ZipInfo(link)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)
    return buffer.getvalue()


def package_zip(root: Path = EXAMPLE_PACKAGES, replace: dict[str, bytes] | None = None,
                prefix: str = "") -> bytes:
    """The files under ``root`` (``.py`` only) as an archive; ``replace`` overrides some."""
    files = {prefix + p.relative_to(root).as_posix(): p.read_bytes()
             for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}
    files.update(replace or {})
    return make_zip(files)


def as_wheel(files: dict[str, bytes], name: str = "orders", version: str = "1.0") -> bytes:
    """A wheel's layout: the modules at the root plus ``<name>-<version>.dist-info``."""
    info = f"{name}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{info}/RECORD": b"",
    }
    return make_zip({**files, **meta})


def as_egg(files: dict[str, bytes], name: str = "orders") -> bytes:
    meta = {"EGG-INFO/PKG-INFO": f"Metadata-Version: 1.0\nName: {name}\n".encode(),
            "EGG-INFO/top_level.txt": f"{name}\n".encode()}
    return make_zip({**files, **meta})


def rename_entry(data: bytes, old: str, new: bytes) -> bytes:
    """Rewrite an entry's name in both of its headers (same length), e.g. to put a NUL in it."""
    raw = old.encode()
    assert len(raw) == len(new) and data.count(raw) == 2
    return data.replace(raw, new)


def set_declared_size(data: bytes, entry: str, size: int) -> bytes:
    """Make both headers of ``entry`` declare ``size`` uncompressed bytes (the CRC stays)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(entry)
    struct.pack_into("<I", out, info.header_offset + 22, size)  # local header
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:  # central directory headers
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_length] == entry.encode():
            struct.pack_into("<I", out, at + 24, size)
        at += 4
    return bytes(out)


def set_declared_count(data: bytes, count: int) -> bytes:
    """Make the end-of-directory record declare ``count`` entries."""
    out = bytearray(data)
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", out, at + 8, count, count)
    return bytes(out)
