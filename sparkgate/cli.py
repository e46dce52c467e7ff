"""The ``sparkgate`` command line: each command a few lines over the library."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from sparkgate import shared_metrics
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.errors import (
    ConfigError,
    Conflict,
    EnvironmentBuildFailed,
    SparkgateError,
)
from sparkgate.jobs.keys import ROLES, KeyStore
from sparkgate.jobs.settings import Settings, load_settings
from sparkgate.lazy_group import LazyGroup
from sparkgate.log_format import configure_logging

log = logging.getLogger("sparkgate")

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    envvar="SPARKGATE_CONFIG", help="TOML settings file (default: built-in defaults).",
)


def _load(config_path: Path | None) -> Settings:
    settings = _settings(config_path)
    configure_logging(settings)
    return settings


def _settings(config_path: Path | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


# Commands of their own modules, imported only when run (or listed by --help): a worker's
# start, and every command, does not pay for the client side's imports (rich, the schedules'
# croniter, the deploy diff) on its way.
_ELSEWHERE = {
    "run": "sparkgate.run_command:run",
    "deploy": "sparkgate.deploy_command:deploy",
    "schedules": "sparkgate.schedule_commands:schedules",
    **{name: f"sparkgate.job_commands:{name}"
       for name in ("jobs", "job", "logs", "cancel", "functions", "contexts", "workers")},
}


@click.group(cls=LazyGroup, elsewhere=_ELSEWHERE,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparkgate", prog_name="sparkgate")
def main() -> None:
    """sparkgate: Spark functions as a web service (Mist's HTTP API v2).

    \b
    sparkgate serve                       # everything on one machine, embedded defaults
    sparkgate db upgrade                  # migrate the configured database
    sparkgate worker --context default    # a worker for one context (any host)
    sparkgate keys create --name me --role admin   # an API key (auth_enabled)
    sparkgate run --local examples/pi.py:pi --arg samples=1000   # a function, here
    sparkgate run pi --arg samples=1000   # a job, followed live (over HTTP: --url)
    sparkgate jobs --status failed        # and: job, logs, cancel, functions, contexts, workers
    sparkgate deploy ./my-functions --dry-run   # a folder's functions, as a diff
    sparkgate schedules list              # cron-timed functions (over HTTP: --url)
    """


@main.command()
@config_option
@click.option("--host", help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default 2004).")
@click.option("--insecure", is_flag=True,
              help="Allow listening beyond loopback without authentication.")
@click.option("--processes", type=click.IntRange(min=0),
              help="Gateway processes on the port (default: the processes setting; 0: one "
                   "per core).")
@click.option("--first-key", is_flag=True,
              help="With authentication on and no API key yet, create an admin key and log "
                   "its token once (the Docker image's default).")
def serve(config_path: Path | None, host: str | None, port: int | None, insecure: bool,
          processes: int | None, first_key: bool) -> None:
    """Run the gateway, a worker supervisor and (by default) the example functions.

    With no settings: SQLite and an embedded Redis under ./sparkgate-data, on 127.0.0.1:2004.
    Set SPARKGATE_DATABASE_URL / SPARKGATE_REDIS_URL for PostgreSQL and an external Redis.

    \b
    sparkgate serve
    SPARKGATE_DATABASE_URL=postgresql://localhost/sparkgate sparkgate serve --port 8080
    """
    settings = _settings(config_path)
    # Before the gateway is imported: prometheus-client picks its mode then.
    shared_metrics.share(settings.data_dir)
    from sparkgate.serving import StoppedWhileStarting, run_server

    configure_logging(settings)  # after the imports, as before: they log as they load
    host = host or settings.host
    # The app answers requests for the address it listens on (gateway/browsers.py).
    settings = dataclasses.replace(settings, host=host,
                                   processes=settings.processes if processes is None
                                   else processes)
    if not settings.auth_enabled and not _is_loopback(host):
        if not insecure:
            raise click.ClickException(
                f"refusing to listen on {host} without authentication; listen on 127.0.0.1, "
                "set auth_enabled (SPARKGATE_AUTH_ENABLED=true, see docs/security.md), or "
                "pass --insecure if a proxy in front of sparkgate authenticates requests")
        log.warning("\n".join(INSECURE_BANNER), host)
    if settings.auth_enabled and not settings.jwt_issuer and not first_key:
        _warn_if_no_keys(settings)
    try:
        status = run_server(settings, host, port or settings.port, config_path, first_key)
        # Everything serve started has ended (the embedded Redis saved): the log says so, at
        # the level of its "stopping" line, so that a log showing one shows the other.
        log.warning("stopped" if status == 0 else "stopped at once")
    except (ConfigError, Conflict) as exc:  # Conflict: the port or the data folder is taken
        raise click.ClickException(exc.message) from None
    except KeyboardInterrupt:  # while starting; what had started is stopped by now
        log.warning("interrupted while starting: stopped")
        status = 128 + signal.SIGINT
    except StoppedWhileStarting:
        log.warning("stopped by SIGTERM while starting")
        status = 128 + signal.SIGTERM
    sys.exit(status)


@main.command("gateway-process", hidden=True)
@config_option
@click.option("--fd", "fds", type=int, multiple=True, required=True,
              help="A listening socket inherited from serve.")
@click.option("--ready-fd", type=int, required=True,
              help="A pipe to serve, told once this process is set up.")
@click.option("--go-fd", type=int, required=True,
              help="A pipe from serve, closed when all its processes are to serve.")
def gateway_process(config_path: Path | None, fds: tuple[int, ...], ready_fd: int,
                    go_fd: int) -> None:
    """One more gateway on serve's listening sockets (serve starts these itself)."""
    from sparkgate.gateway_processes import run_gateway_process

    sys.exit(run_gateway_process(_load(config_path), list(fds), ready_fd, go_fd))


@main.command()
@config_option
@click.option("--context", "context_name", default="default", show_default=True)
@click.option("--one-job", is_flag=True, help="Exit after one job (exclusive contexts).")
@click.option("--supervisor-pid", type=int,
              help="Stop at once when this process (the supervisor that started the worker, "
                   "its parent) is gone.")
@click.option("--environment", metavar="ID",
              help="Take the jobs of artifacts whose requirements make this environment "
                   "(docs/environments.md), running in it (built here first if need be).")
def worker(config_path: Path | None, context_name: str, one_job: bool,
           supervisor_pid: int | None, environment: str | None) -> None:
    """Run a worker for CONTEXT's jobs on the context's engine: one warm SparkSession (spark),
    or a plain Python process (python). Needs the database and Redis.

    \b
    SPARKGATE_DATABASE_URL=postgresql://db/sparkgate SPARKGATE_REDIS_URL=redis://queue:6379 \\
      sparkgate worker --context default
    """
    from sparkgate.workers.environment_entry import ENVIRONMENT_UNAVAILABLE, enter_environment
    from sparkgate.workers.process import Worker

    settings = _load(config_path)
    shared_metrics.unshare(settings.data_dir)
    if not settings.redis_url:
        raise click.ClickException("a worker needs SPARKGATE_REDIS_URL (or redis_url in the "
                                   "settings file): the Redis its gateway uses")
    try:
        if environment is not None:
            enter_environment(settings, environment, supervisor_pid)
        Worker(settings, settings.redis_url, context_name,
               max_jobs_total=1 if one_job else None, supervisor_pid=supervisor_pid,
               environment=environment).run()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except EnvironmentBuildFailed as exc:
        click.echo(f"Error: environment {environment}: {exc.message}", err=True)
        sys.exit(ENVIRONMENT_UNAVAILABLE)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Apply all migrations to the configured database."""
    from sparkgate.jobs.migrate import current, upgrade

    settings = _load(config_path)
    url = settings.resolved_database_url
    upgrade(url)
    click.echo(f"database {make_url(url).render_as_string()} at revision {current(url)}")


@main.command()
@config_option
def supervisor(config_path: Path | None) -> None:
    """Run only the worker supervisor for this host (workers per context, restarted)."""
    from sparkgate.workers.supervisor import Supervisor

    settings = _load(config_path)
    if not settings.redis_url:
        raise click.ClickException("the supervisor needs SPARKGATE_REDIS_URL")
    sup = Supervisor.for_settings(settings, settings.redis_url, config_path)
    # SIGTERM too (containers, systemd): the workers drain and stop with us, never orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    with contextlib.suppress(KeyboardInterrupt):
        sup.run()
    sup.stop()


INSECURE_BANNER = (
    "!" * 78,
    "INSECURE: listening on %s with authentication off (--insecure).",
    "Anyone who can reach this address can upload code and run it: only do this on a",
    "trusted network or behind a proxy that authenticates every request.",
    "!" * 78,
)


def _warn_if_no_keys(settings: Settings) -> None:
    """Authentication on, no JWT, no key: every request would be refused; say what to do."""
    engine = make_engine(settings.resolved_database_url)
    try:
        active = KeyStore(engine).count_active()
    except DBAPIError:  # not migrated yet (a new embedded database): no keys either
        active = 0
    finally:
        engine.dispose()
    if not active:
        log.warning("authentication is on, but there is no API key and no JWT issuer: every "
                    "request needing a role will be refused. Create a key with "
                    "`sparkgate keys create --name admin --role admin`")


def _key_store(settings: Settings) -> KeyStore:
    """The configured database's keys. An embedded SQLite is migrated as `serve` does, so a
    key can be made before the first start; a server database must be migrated on purpose."""
    from sparkgate.jobs.migrate import prepare_database

    url = settings.resolved_database_url
    prepare_database(url)
    return KeyStore(make_engine(url))


@contextlib.contextmanager
def _keys_errors() -> Iterator[None]:
    try:
        yield
    except SparkgateError as exc:
        raise click.ClickException(exc.message) from None
    except DBAPIError as exc:
        raise click.ClickException(
            f"the database cannot be used ({exc.orig}); is it migrated? "
            "Run `sparkgate db upgrade`") from None


@main.group()
def keys() -> None:
    """API keys (authentication: see docs/security.md).

    \b
    sparkgate keys create --name ci --role submit --function pi --function word_count
    sparkgate keys list
    sparkgate keys revoke ci
    """


@keys.command("create")
@config_option
@click.option("--name", required=True, help="Unique name; jobs record it as key:<name>.")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="read: GETs, every owner's jobs; submit: also run jobs, and see and "
                   "cancel its own jobs only; admin: everything (docs/security.md, Tenancy).")
@click.option("--function", "functions", multiple=True,
              help="Limit a submit key to this function (repeat for several).")
def keys_create(config_path: Path | None, name: str, role: str,
                functions: tuple[str, ...]) -> None:
    """Create a key and print its token, once: only a hash of it is stored."""
    with _keys_errors():
        created = _key_store(_load(config_path)).create(name, role, list(functions) or None)
    click.echo(created.token)
    click.echo(f"key {name!r} ({role}) created; the token above is shown only now: store it "
               "safely. Send it as `Authorization: Bearer <token>`.", err=True)


@keys.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
def keys_list(config_path: Path | None, as_json: bool) -> None:
    """Every key: name, prefix, role, functions, created, revoked, last used (no secrets)."""
    with _keys_errors():
        found = _key_store(_load(config_path)).list_keys()
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in found], indent=2))
        return
    rows = [("NAME", "PREFIX", "ROLE", "FUNCTIONS", "CREATED", "REVOKED", "LAST USED")]
    rows += [(k.name, f"sgk_{k.prefix}_…", k.role,
              "*" if k.functions is None else ",".join(k.functions),
              _when(k.created_at), _when(k.revoked_at), _when(k.last_used_at)) for k in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
@config_option
@click.argument("name")
def keys_revoke(config_path: Path | None, name: str) -> None:
    """Revoke the key NAME: refused from now on (within seconds on running gateways)."""
    with _keys_errors():
        key = _key_store(_load(config_path)).revoke(name)
    click.echo(f"key {name!r} revoked at {_when(key.revoked_at)}")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

