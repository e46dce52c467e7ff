"""Package artifacts: every rule an archive must pass, what is read from it without importing
it, and how a worker unpacks and imports it (two versions of one package in one process)."""

from __future__ import annotations

import io
import re
import sys
import zipfile
from pathlib import Path

import pytest

from sparkgate.jobs.archives import ArchiveLimits, read_package, unpack
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.deployment import build_function, upload_artifact
from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures.reading import inspect_package
from sparkgate.workers.artifacts import FunctionLoader
from tests.zips import (
    as_egg,
    as_wheel,
    make_zip,
    package_zip,
    rename_entry,
    set_declared_count,
    set_declared_size,
    with_symlink,
)

LIMITS = ArchiveLimits.for_artifact_bytes(10 * 1024 * 1024)
OK = b"def f(spark, n: int = 1):\n    return n\n"


def refused(content: bytes, limits: ArchiveLimits = LIMITS, name: str = "p.zip") -> dict:
    with pytest.raises(InvalidArtifact) as caught:
        read_package(name, content, limits)
    error = caught.value
    assert error.message.startswith(f"artifact {name!r}")
    details = error.details
    if details["entry"] is not None:
        assert repr(details["entry"]) in error.message or details["entry"].endswith("…")
    return {"message": error.message, **details}


# ---------------------------------------------------------------------------------------------
# The rules


@pytest.mark.parametrize(("entry", "rule"), [
    ("/etc/cron.d/evil.py", "absolute_path"),
    ("C:/evil.py", "absolute_path"),
    ("../evil.py", "parent_component"),
    ("pkg/../../evil.py", "parent_component"),
    ("pkg\\..\\..\\evil.py", "backslash"),
    ("pkg//evil.py", "bad_name"),
    ("./evil.py", "bad_name"),
    ("pkg/\x01evil.py", "bad_name"),
    ("json/__init__.py", "reserved_name"),
    ("sparkgate/store.py", "reserved_name"),
    ("os.py", "reserved_name"),
])
def test_hostile_paths_are_refused_naming_the_entry_and_rule(entry, rule):
    error = refused(make_zip({"ok/__init__.py": OK, entry: OK}))
    assert (error["entry"], error["rule"]) == (entry, rule)


def test_a_nul_in_a_name_is_refused_though_zipfile_would_cut_the_name_there():
    data = rename_entry(make_zip({"ok/__init__.py": OK, "ok/evilXpy.py": OK}),
                        "ok/evilXpy.py", b"ok/evil\x00py.py")
    error = refused(data)
    assert error["rule"] == "bad_name" and error["entry"] == "ok/evil\x00py.py"


def test_a_very_long_name_is_refused():
    error = refused(make_zip({"ok/__init__.py": OK, "ok/" + "a" * 300 + ".py": OK}))
    assert error["rule"] == "bad_name" and "255" in error["message"]


def test_symlinks_are_refused():
    error = refused(with_symlink({"ok/__init__.py": OK}, "ok/passwd.py", "/etc/passwd"))
    assert (error["entry"], error["rule"]) == ("ok/passwd.py", "symlink")


@pytest.mark.parametrize(("names", "rule", "text"), [
    (["ok/a.py", "ok/a.py"], "duplicate", "appears twice"),
    (["ok/A.py", "ok/a.py"], "duplicate", "differs only in case from entry 'ok/A.py'"),
    (["ok/a", "ok/a/b.py"], "duplicate", "both a file and a directory"),
])
def test_duplicate_names_are_refused(names, rule, text):
    error = refused(make_zip([("ok/__init__.py", OK)] + [(n, OK) for n in names]))
    assert error["rule"] == rule and text in error["message"]


def test_more_entries_than_the_limit_are_refused_before_the_directory_is_parsed():
    data = make_zip({f"ok/m{i}.py": OK for i in range(6)})
    error = refused(data, ArchiveLimits(max_unpacked_bytes=10**6, max_entries=5))
    assert error["rule"] == "too_many_entries" and "6 entries; the limit is 5" in error["message"]
    # The end record lies (says 2): the directory itself is counted too.
    error = refused(set_declared_count(data, 2), ArchiveLimits(10**6, max_entries=5))
    assert error["rule"] == "too_many_entries"


def test_a_zip_bomb_entry_is_refused_by_its_compression_ratio():
    data = make_zip({"ok/__init__.py": OK, "ok/zeros.py": b"\0" * (10 * 1024 * 1024)})
    assert len(data) < 100_000
    error = refused(data)
    assert (error["entry"], error["rule"]) == ("ok/zeros.py", "compression_ratio")
    assert "10,485,760 bytes" in error["message"] and "limit is 100" in error["message"]


def test_the_declared_total_size_is_capped():
    # Incompressible-ish content (stored): ratio 1, but 3 x 400 KB > 1 MB.
    blob = bytes(range(256)) * 1600
    data = make_zip({"ok/__init__.py": OK, **{f"ok/d{i}.py": blob for i in range(3)}},
                    method=zipfile.ZIP_STORED)
    error = refused(data, ArchiveLimits(max_unpacked_bytes=1_000_000))
    assert (error["entry"], error["rule"]) == ("ok/d2.py", "unpacked_size")
    assert "1,000,000" in error["message"]


def test_a_header_that_declares_less_than_the_entry_holds_is_caught_while_reading():
    # 10 MB of zeros that says it is 1,000 bytes: the ratio check passes, decompression must not
    # go past what was declared, and the lie is reported.
    data = make_zip({"ok/__init__.py": OK, "ok/bomb.py": b"\0" * (10 * 1024 * 1024)})
    error = refused(set_declared_size(data, "ok/bomb.py", 1000))
    assert error["entry"] == "ok/bomb.py" and error["rule"] in ("checksum", "size_mismatch")
    assert "lies about its size" in error["message"]


def test_a_header_that_declares_more_than_the_entry_holds_is_caught_while_reading():
    data = make_zip({"ok/__init__.py": OK, "ok/m.py": OK})
    error = refused(set_declared_size(data, "ok/m.py", len(OK) + 10))
    assert (error["entry"], error["rule"]) == ("ok/m.py", "size_mismatch")
    assert f"declares {len(OK) + 10} bytes but holds {len(OK)}" in error["message"]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_a_truncated_zip_is_refused(cut):
    data = package_zip()
    error = refused(data[: int(len(data) * cut)])
    assert error["rule"] in ("not_a_zip", "corrupt", "checksum")


def test_a_zip_with_a_corrupted_entry_is_refused():
    data = bytearray(make_zip({"ok/__init__.py": OK * 50}))
    data[60] ^= 0xFF  # inside the first entry's compressed data
    error = refused(bytes(data))
    assert error["entry"] == "ok/__init__.py" and error["rule"] in ("checksum", "corrupt")


@pytest.mark.parametrize("content", [b"", b"hello", b"def f(spark): pass\n",
                                     b"PK\x05\x06" + b"\0" * 18])
def test_what_is_not_a_zip_is_refused(content):
    assert refused(content)["rule"] == "not_a_zip"


def test_data_before_the_first_entry_is_refused():
    assert refused(b"#!/bin/sh\n" + package_zip())["rule"] == "not_a_zip"


def test_an_archive_without_python_is_refused():
    assert refused(make_zip({"data/readme.txt": b"hi"}))["rule"] == "no_python"


def test_an_encrypted_entry_is_refused():
    data = bytearray(make_zip({"ok/__init__.py": OK}))
    data[6] |= 1  # the local header's flags
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1
    assert refused(bytes(data))["rule"] == "encrypted"


# ---------------------------------------------------------------------------------------------
# Good archives: zip, wheel, egg


def test_the_example_package_is_accepted_and_its_schema_read():
    package = read_package("orders.zip", package_zip(), LIMITS)
    assert package.top_level_names() == ["orders"]
    assert "orders/report.py" in package.module_names()
    signature = inspect_package(package.sources.get, "orders.report.summary", "orders.zip")
    assert [p.name for p in signature.params] == ["amounts", "currency", "top"]
    # The name its __init__ re-exports (Mist's python examples were named this way).
    again = inspect_package(package.sources.get, "orders.summary", "orders.zip")
    assert again == signature


@pytest.mark.parametrize("wrap", [as_wheel, as_egg])
def test_wheels_and_eggs_hold_their_modules_at_the_root(wrap):
    files = {"orders/__init__.py": b"", "orders/jobs.py": OK, "tool.py": OK}
    package = read_package("orders-1.0-py3-none-any.whl", wrap(files), LIMITS)
    assert package.top_level_names() == ["orders", "tool"]
    assert [p.name for p in inspect_package(package.sources.get, "orders.jobs.f", "x").params] \
        == ["n"]
    # A top-level module: className tool.f
    assert inspect_package(package.sources.get, "tool.f", "x").params[0].name == "n"


@pytest.mark.parametrize(("class_name", "message"), [
    ("f", "a function is named module.function"),
    ("orders.nothing.f", "has no module 'orders.nothing' (expected orders/nothing.py"),
    ("orders.jobs.g", "has no top-level function 'g'"),
    ("orders.elsewhere", "imports 'elsewhere' from 'numpy', which is not a module of the archive"),
    ("orders.loop", "an imported name"),
])
def test_names_that_do_not_lead_to_a_function_are_refused(class_name, message):
    files = {"orders/__init__.py": b"from numpy import elsewhere\nfrom . import loop\n",
             "orders/jobs.py": OK}
    package = read_package("o.zip", make_zip(files), LIMITS)
    with pytest.raises(InvalidArtifact, match=re.escape(message)):
        inspect_package(package.sources.get, class_name, "o.zip")


def test_deploying_a_package_function_and_refusing_a_bad_one(catalog: Catalog):
    upload_artifact(catalog, "orders.zip", package_zip(), replace=False)
    function = build_function(catalog, "summary", "orders.zip", "orders.report.summary",
                              "default", [], inspect=True)
    assert function.signature["params"][0]["name"] == "amounts"
    catalog.create_function(function)
    # A replacement whose module lost the function is refused, and nothing changes.
    before = catalog.get_artifact("orders.zip")
    broken = package_zip(replace={"orders/report.py": b"VERSION = 2\n"})
    with pytest.raises(InvalidArtifact, match="does not fit function 'summary'"):
        upload_artifact(catalog, "orders.zip", broken, replace=True)
    assert catalog.get_artifact("orders.zip") == before


def test_upload_limits_are_the_callers(catalog: Catalog):
    with pytest.raises(InvalidArtifact, match="unpacked size"):
        upload_artifact(catalog, "orders.zip", package_zip(), replace=False,
                        limits=ArchiveLimits(max_unpacked_bytes=100))
    assert catalog.list_artifacts() == []


# ---------------------------------------------------------------------------------------------
# Unpacking and importing in a worker


def test_unpack_writes_only_inside_its_folder(tmp_path: Path):
    target = tmp_path / "unpacked"
    target.mkdir()
    unpack("orders.zip", package_zip(), LIMITS, target)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["unpacked", "unpacked/orders", "unpacked/orders/__init__.py",
                       "unpacked/orders/money.py", "unpacked/orders/report.py"]
    with pytest.raises(InvalidArtifact):
        unpack("evil.zip", make_zip({"ok/a.py": OK, "../escape.py": OK}), LIMITS,
               tmp_path / "other")
    assert not (tmp_path / "escape.py").exists()


def version_zip(version: str) -> bytes:
    return package_zip(replace={"orders/report.py": (
        "from orders.money import rounded\n"
        f"VERSION = {version!r}\n"
        "def summary(spark, amounts: list[float], currency: str = 'EUR', top: int = 3):\n"
        "    from orders import money\n"
        "    return {'version': VERSION, 'total': rounded(sum(amounts), currency),\n"
        "            'money': money.__file__}\n").encode()})


def store_blob(catalog: Catalog, name: str, content: bytes) -> str:
    return catalog.put_artifact(name, content, replace_existing=True).sha1


def test_a_worker_unpacks_once_per_sha_and_runs_each_version_it_was_given(
        catalog: Catalog, tmp_path: Path):
    cache = tmp_path / "cache"
    loader = FunctionLoader(catalog, cache)
    sha1 = store_blob(catalog, "orders.zip", version_zip("1"))
    v1 = loader.load(sha1, "orders.zip", "orders.report.summary")
    assert v1.fn(None, [1.0, 2.0])["version"] == "1"
    assert (cache / sha1 / "orders" / "report.py").is_file()
    assert [p.name for p in cache.iterdir()] == [sha1]  # no temporary folder left behind

    sha2 = store_blob(catalog, "orders.zip", version_zip("2"))
    v2 = loader.load(sha2, "orders.zip", "orders.summary")
    result = v2.fn(None, [1.0, 2.0])
    assert result["version"] == "2"
    assert result["money"].startswith(str(cache / sha2))  # its own helper module, not v1's
    assert sys.modules["orders"].__file__.startswith(str(cache / sha2))
    # The old version's function still runs the old code.
    assert v1.fn(None, [1.0])["version"] == "1"
    # And a new function of the old version is imported from the old folder again.
    again = FunctionLoader(catalog, cache).load(sha1, "orders.zip", "orders.summary")
    assert again.fn(None, [1.0])["version"] == "1"
    assert sorted(p.name for p in cache.iterdir()) == sorted([sha1, sha2])


def test_a_package_that_would_shadow_an_installed_module_is_refused(catalog: Catalog,
                                                                     tmp_path: Path):
    # 'aiohttp' is installed (it is not reserved at upload: the gateway cannot know what each
    # worker has installed); the worker refuses to shadow it.
    content = make_zip({"aiohttp/__init__.py": OK})
    sha1 = store_blob(catalog, "shadow.zip", content)
    with pytest.raises(InvalidArtifact, match="can already import 'aiohttp'"):
        FunctionLoader(catalog, tmp_path).load(sha1, "shadow.zip", "aiohttp.f")
    import aiohttp

    assert sys.modules["aiohttp"] is aiohttp and "site-packages" in aiohttp.__file__


def test_a_stored_archive_that_fails_the_checks_is_not_unpacked(catalog: Catalog,
                                                                 tmp_path: Path):
    # Stored behind the upload's back (put_artifact does not check): the worker checks again.
    sha1 = store_blob(catalog, "evil.zip", make_zip({"ok/a.py": OK, "../../escape.py": OK}))
    with pytest.raises(InvalidArtifact, match=re.escape("has a '..' component")):
        FunctionLoader(catalog, tmp_path / "cache").load(sha1, "evil.zip", "ok.a.f")
    assert not (tmp_path / "escape.py").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_zipfile_is_not_fooled_by_our_builders():
    """The builders make what they claim (a guard against tests that pass for nothing)."""
    data = set_declared_size(make_zip({"a/b.py": OK}), "a/b.py", 5)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.getinfo("a/b.py").file_size == 5
