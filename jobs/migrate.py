"""Run Alembic migrations from code (``sparkgate db upgrade``, and ``serve`` on start)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url

from sparkgate.jobs.errors import ConfigError

# Alembic's package:path form: found through the installed package, wherever it lies.
SCRIPT_LOCATION = "sparkgate.migrations:."


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def prepare_database(database_url: str) -> None:
    """Migrate an embedded SQLite in place; a server database must be migrated on purpose
    (``sparkgate db upgrade``): ConfigError if it is not at the head revision."""
    if make_url(database_url).get_backend_name() == "sqlite":
        upgrade(database_url)
        return
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    if (revision := current(database_url)) != head:
        raise ConfigError(
            f"database {make_url(database_url).render_as_string()} is at revision {revision}, "
            f"not {head}: run `sparkgate db upgrade` first"
        )


def current(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return revision
