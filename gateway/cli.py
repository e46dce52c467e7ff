"""The ``sparkgate`` command line: each command a few lines over the library."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
from pathlib import Path

import click
from sqlalchemy import make_url

from jobs.errors import ConfigError
from jobs.migrate import current, upgrade
from jobs.settings import Settings, load_settings

log = logging.getLogger("sparkgate")

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    envvar="SPARKGATE_CONFIG", help="TOML settings file (default: built-in defaults).",
)


def _load(config_path: Path | None) -> Settings:
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


@click.group()
def main() -> None:
    """sparkgate: Spark functions as a web service (Mist's HTTP API v2).

    \b
    sparkgate serve                       # everything on one machine, embedded defaults
    sparkgate db upgrade                  # migrate the configured database
    sparkgate worker --context default    # a worker for one context (any host)
    """


@main.command()
@config_option
@click.option("--host", help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default 2004).")
@click.option("--insecure", is_flag=True,
              help="Allow listening beyond loopback without authentication.")
def serve(config_path: Path | None, host: str | None, port: int | None, insecure: bool) -> None:
    """Run the gateway, a worker supervisor and (by default) the example functions.

    With no settings: SQLite and an embedded Redis under ./sparkgate-data, on 127.0.0.1:2004.
    Set SPARKGATE_DATABASE_URL / SPARKGATE_REDIS_URL for PostgreSQL and an external Redis.

    \b
    sparkgate serve
    SPARKGATE_DATABASE_URL=postgresql://localhost/sparkgate sparkgate serve --port 8080
    """
    from gateway.serving import run_server

    settings = _load(config_path)
    host = host or settings.host
    if not insecure and not _is_loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host} without authentication; listen on 127.0.0.1, or "
            "pass --insecure if a proxy in front of sparkgate authenticates requests"
        )
    if insecure and not _is_loopback(host):
        log.warning("INSECURE: listening on %s with no authentication: anyone who can reach "
                    "it can run code", host)
    try:
        run_server(settings, host, port or settings.port, config_path)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


@main.command()
@config_option
@click.option("--context", "context_name", default="default", show_default=True)
@click.option("--one-job", is_flag=True, help="Exit after one job (exclusive contexts).")
@click.option("--supervised", is_flag=True,
              help="Stop (draining) when the parent process, a supervisor, goes away.")
def worker(config_path: Path | None, context_name: str, one_job: bool,
           supervised: bool) -> None:
    """Run a worker: one warm SparkSession for CONTEXT's jobs. Needs the database and Redis.

    \b
    SPARKGATE_DATABASE_URL=postgresql://db/sparkgate SPARKGATE_REDIS_URL=redis://queue:6379 \\
      sparkgate worker --context default
    """
    from workers.process import Worker

    settings = _load(config_path)
    if not settings.redis_url:
        raise click.ClickException("a worker needs SPARKGATE_REDIS_URL (or redis_url in the "
                                   "settings file): the Redis its gateway uses")
    try:
        Worker(settings, settings.redis_url, context_name,
               max_jobs_total=1 if one_job else None, supervised=supervised).run()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Apply all migrations to the configured database."""
    settings = _load(config_path)
    url = settings.resolved_database_url
    upgrade(url)
    click.echo(f"database {make_url(url).render_as_string()} at revision {current(url)}")


@main.command()
@config_option
def supervisor(config_path: Path | None) -> None:
    """Run only the worker supervisor for this host (workers per context, restarted)."""
    from workers.supervisor import Supervisor

    settings = _load(config_path)
    if not settings.redis_url:
        raise click.ClickException("the supervisor needs SPARKGATE_REDIS_URL")
    sup = Supervisor.for_settings(settings, settings.redis_url, config_path)
    # SIGTERM too (containers, systemd): the workers drain and stop with us, never orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    with contextlib.suppress(KeyboardInterrupt):
        sup.run()
    sup.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
