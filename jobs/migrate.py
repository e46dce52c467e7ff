"""Run Alembic migrations from code (``sparkgate db upgrade``, and ``serve`` on start)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

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


def current(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return revision
