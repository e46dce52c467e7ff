"""Statements run on the driver's own cursor, each compiled once per dialect.

Per execution, SQLAlchemy Core derives a statement's cache key, looks its compiled form up,
processes every parameter and wraps the cursor in a result object. On the job store's per-job
writes that took longer than SQLite took to run them (py-spy: Store.transition was 47% of a
no-op worker's CPU). Here a statement is compiled once and run with its parameters as the driver
takes them, in the caller's SQLAlchemy transaction; a driver error still goes through
SQLAlchemy's handling, so callers see the same exceptions (IntegrityError, OperationalError...)
and a lost connection still invalidates the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ClauseElement, Connection, Dialect, Select
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class DriverStatement:
    sql: str
    # The parameters' order for a positional driver (sqlite3's "?"); None: the driver takes
    # them by name (psycopg's "%(name)s").
    order: tuple[str, ...] | None

    def params(self, values: Mapping[str, Any]) -> Any:
        return values if self.order is None else tuple(values[name] for name in self.order)


@dataclass(frozen=True)
class DriverSelect:
    """A SELECT whose rows come back as SQLAlchemy would give them: by column name (labels
    included), each value converted by its column type's own result processor."""

    statement: DriverStatement
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{name: value if process is None else process(value)
                 for name, process, value in zip(self.names, self.processors, row, strict=True)}
                for row in fetch_all(conn, self.statement, values)]


def compiled_select(statement: Select[Any], dialect: Dialect) -> DriverSelect:
    columns = list(statement.selected_columns)
    return DriverSelect(
        compiled(statement, dialect), tuple(column.name for column in columns),
        tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
              for column in columns))


def compiled(statement: ClauseElement, dialect: Dialect) -> DriverStatement:
    rendered = cast(SQLCompiler, statement.compile(dialect=dialect))
    order = tuple(rendered.positiontup or ()) if rendered.positional else None
    return DriverStatement(rendered.string, order)


def fetch_all(conn: Connection, statement: DriverStatement,
              values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``statement`` in ``conn``'s transaction; the rows it returns."""
    _autobegin(conn)
    with _cursor(conn, statement, values) as cursor:
        cursor.execute(statement.sql, statement.params(values))
        return cursor.fetchall()


def execute(conn: Connection, statement: DriverStatement, values: Mapping[str, Any]) -> None:
    """Run ``statement``, which returns no rows, as it is: no transaction begun for it (it may
    be the BEGIN of one, jobs/db.py)."""
    with _cursor(conn, statement, values) as cursor:
        cursor.execute(statement.sql, statement.params(values))


def execute_many(conn: Connection, statement: DriverStatement,
                 rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` once per row, in ``conn``'s transaction."""
    _autobegin(conn)
    with _cursor(conn, statement, rows) as cursor:
        if len(rows) == 1:  # psycopg's executemany is a pipeline: twice the CPU for one row
            cursor.execute(statement.sql, statement.params(rows[0]))
        else:
            cursor.executemany(statement.sql, [statement.params(row) for row in rows])


def _autobegin(conn: Connection) -> None:
    # As Connection.execute does: the statement is in the transaction the caller's commit()
    # commits (or the pool's reset rolls back), begun by SQLAlchemy (and jobs/db.py's BEGIN).
    if not conn.in_transaction():
        conn.begin()


@contextmanager
def _cursor(conn: Connection, statement: DriverStatement, values: Any) -> Iterator[Any]:
    cursor = conn.connection.cursor()
    try:
        yield cursor
    except BaseException as exc:
        # SQLAlchemy's own handling, as Connection.execute does it (it always raises): the
        # DBAPIError subclass callers catch, invalidation on a lost connection, and the
        # cursor closed (unless the connection is lost).
        conn._handle_dbapi_exception(exc, statement.sql, values, cursor, None)
    cursor.close()
