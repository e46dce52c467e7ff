"""The job store: every job write goes through here, each in one short transaction.

Status changes are ``transition()``: one ``UPDATE ... WHERE id = ? AND status IN (...)
RETURNING *``, so concurrent starts, cancels and finishes have exactly one winner and the
winner gets the job's new row in the same round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    RowMapping,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import json_text, json_value, now_ms, writing
from sparkgate.jobs.driver_sql import DriverStatement, compiled, execute_many, fetch_all
from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.group_commit import GroupCommit
from sparkgate.jobs.ids import uuid7
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.state import ALLOWED_SOURCES, JobStatus
from sparkgate.jobs.webhooks import Outbox


@dataclass(frozen=True)
class Job:
    id: str
    function: str
    context: str
    arguments: dict[str, Any]
    file_path: str
    class_name: str
    artifact_sha1: str | None
    status: JobStatus
    source: str
    external_id: str | None
    create_time: int
    start_time: int | None = None
    end_time: int | None = None
    result: Any = None
    error: str | None = None
    worker_id: str | None = None
    start_timeout_ms: int | None = None
    perform_timeout_ms: int | None = None
    progress: dict[str, Any] | None = None
    submitter: str | None = None
    idempotency_key: str | None = None
    # Answered from the result cache: the job whose result this one repeats.
    cached_from: str | None = None
    # Created by this schedule (a tick, or its "run now").
    schedule: str | None = None
    # Told of the job's end (jobs/webhooks.py).
    callback_url: str | None = None
    # The environment it runs in (jobs/environments.py); None: the base one.
    environment: str | None = None
    # Values a listing left out for their size (they are None here): column name -> size of
    # its JSON (or text) in bytes. Empty for a job read in full.
    oversized: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | RowMapping) -> Job:
        values = dict(row)
        values["status"] = JobStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class NewJob:
    function: str
    context: str
    arguments: dict[str, Any]
    file_path: str
    class_name: str
    artifact_sha1: str | None
    source: str = "http"
    external_id: str | None = None
    start_timeout_ms: int | None = None
    perform_timeout_ms: int | None = None
    submitter: str | None = None
    idempotency_key: str | None = None
    id: str = field(default_factory=uuid7)
    # A job answered from the result cache is recorded ended as it is created: finished
    # with the result of ``cached_from``. Every other job starts queued.
    status: JobStatus = JobStatus.QUEUED
    result: Any = None
    cached_from: str | None = None
    schedule: str | None = None
    callback_url: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class JobBrief:
    """The columns a scan over many jobs needs (no arguments, result, error or logs)."""

    id: str
    context: str
    status: JobStatus
    create_time: int
    worker_id: str | None
    start_timeout_ms: int | None
    start_time: int | None
    environment: str | None = None


@dataclass(frozen=True)
class JobQuery:
    statuses: Sequence[str] = ()
    function: str | None = None
    context: str | None = None
    worker_id: str | None = None
    external_id: str | None = None
    # Only the jobs of this submitter (a caller who sees only its own); None: everyone's.
    submitter: str | None = None
    schedule: str | None = None
    limit: int = 25
    offset: int = 0


# Up to this many matches a listing's total is counted exactly (a few milliseconds at most).
EXACT_COUNT_UP_TO = 10_000


@dataclass(frozen=True)
class JobCount:
    total: int
    exact: bool


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Every status change a webhook or a callback wants is written with its deliveries.
        self.outbox = Outbox()
        # On SQLite, status changes that this process's threads ask for at once share a commit.
        self._commits = GroupCommit(engine)

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def create_job(self, new: NewJob) -> Job:
        with writing(self.engine) as conn:
            (job,) = self.insert_jobs(conn, [new])
        return job

    def insert_jobs(self, conn: Connection, new: Sequence[NewJob]) -> list[Job]:
        """New jobs (queued, or ended if answered from the result cache), inserted in the
        caller's transaction (one statement per row shape, executed for all its rows)."""
        created = now_ms()
        rows = [_new_row(n, created) for n in new]
        # One statement per shape: a queued job's row leaves its result out (SQL NULL, where
        # a JSON column would store None as the JSON text null).
        for cached in (False, True):
            if shaped := [r for r in rows if ("cached_from" in r) is cached]:
                statement = _insert_statement(conn.dialect, tuple(shaped[0]))
                execute_many(conn, statement, [_json_params(r) for r in shaped])
        jobs = [Job.from_row(r) for r in rows]
        self.outbox.add(conn, [job for job in jobs if job.status.terminal])
        return jobs

    @staticmethod
    def jobs_with_keys(conn: Connection, keys: Iterable[str]) -> dict[str, Job]:
        """The jobs holding these idempotency keys, by key."""
        statement = select(t.jobs).where(t.jobs.c.idempotency_key.in_(list(keys)))
        return {r["idempotency_key"]: Job.from_row(r)
                for r in conn.execute(statement).mappings()}

    def delete_unqueued(self, job_ids: Sequence[str]) -> None:
        """Remove jobs that were never queued (their clients were told so), with their logs."""
        with writing(self.engine) as conn:
            conn.execute(delete(t.job_logs).where(t.job_logs.c.job_id.in_(job_ids)))
            conn.execute(delete(t.jobs).where(t.jobs.c.id.in_(job_ids),
                                              t.jobs.c.status == JobStatus.QUEUED.value))

    def transition(self, job_id: str, target: JobStatus,
                   only_from: Iterable[JobStatus] | None = None, *,
                   logs: Sequence[LogLine] = (), **fields: Any) -> Job:
        """Move the job to ``target`` if its current status allows it; raise otherwise.

        ``only_from`` narrows the allowed sources further (never widens them); ``fields`` are
        other columns written in the same UPDATE (result, error, times...); ``logs`` are log
        lines stored in the same transaction, only if the move happens.
        """
        allowed = ALLOWED_SOURCES[target]
        if only_from is not None:
            allowed = allowed & frozenset(only_from)
        return self._commits.run(
            functools.partial(self._transition, job_id, target, allowed, logs, fields))

    def _transition(self, job_id: str, target: JobStatus, allowed: frozenset[JobStatus],
                    logs: Sequence[LogLine], fields: dict[str, Any], conn: Connection) -> Job:
        statement = _transition_statement(conn.dialect, target, allowed, tuple(sorted(fields)))
        values = {_SET + name: value for name, value in _json_params(fields).items()}
        rows = fetch_all(conn, statement, {"job_id": job_id, **values})
        if not rows:
            current = conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == job_id)).scalar()
            if current is None:
                raise job_not_found(job_id)
            raise IllegalTransition(job_id, current, target.value)
        if logs:
            execute_many(conn, _logs_statement(conn.dialect), _log_rows(job_id, logs))
        job = _driver_job(rows[0], conn.dialect.name)
        self.outbox.add(conn, [job])
        return job

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with writing(self.engine) as conn:
            _without_waiting_for_disk(conn)
            conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(progress=progress))

    def get_job(self, job_id: str, raw_values: bool = False) -> Job:
        """``raw_values``: the arguments and result as stored (``RawJSON``), not parsed, for a
        caller that only passes them on: megabytes of JSON cost a copy, not a parse and an
        encode, nor their weight as Python objects."""
        dialect = self.engine.dialect
        with self.engine.connect() as conn:
            rows = fetch_all(conn, _get_statement(dialect, raw_values), {"job_id": job_id})
        if not rows:
            raise job_not_found(job_id)
        return _driver_job(rows[0], dialect.name, raw_values)

    def submitted_by(self, job_ids: Sequence[str], submitter: str) -> set[str]:
        """Those of ``job_ids`` that ``submitter`` submitted."""
        if not job_ids:
            return set()
        statement = select(t.jobs.c.id).where(t.jobs.c.id.in_(list(job_ids)),
                                              t.jobs.c.submitter == submitter)
        with self.engine.connect() as conn:
            return set(conn.execute(statement).scalars())

    def list_jobs(self, query: JobQuery, count: bool = False,
                  value_max_bytes: int | None = None) -> tuple[list[Job], int | None]:
        """Newest first. ``count`` adds the number of matching jobs (see ``count_jobs``).

        ``value_max_bytes``: arguments, results and errors larger than this are not read at
        all (the database sends only their size, in ``Job.oversized``), so a page of jobs
        with megabytes of arguments each costs no more than a page of small ones."""
        statement = _page(query)
        read: Callable[[RowMapping], Job] = Job.from_row
        if value_max_bytes is not None:
            statement = _capped_page(statement, value_max_bytes)
            read = functools.partial(_capped_job, max_bytes=value_max_bytes)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [read(r) for r in rows], self.count_jobs(query).total if count else None

    def count_jobs(self, query: JobQuery, exact_up_to: int = EXACT_COUNT_UP_TO) -> JobCount:
        """How many jobs match ``query``: exact up to ``exact_up_to``; beyond, on PostgreSQL,
        the planner's estimate (from the table's statistics, within a few percent once
        analyzed). Counting every match is a walk over all of them: 150 ms for a million."""
        conditions = _conditions(query)
        capped = select(t.jobs.c.id).where(*conditions).limit(exact_up_to + 1).subquery()
        with self.engine.connect() as conn:
            counted = conn.execute(select(func.count()).select_from(capped)).scalar_one()
            if counted <= exact_up_to:
                return JobCount(counted, True)
            if conn.dialect.name != "postgresql":
                everything = select(func.count()).select_from(t.jobs).where(*conditions)
                return JobCount(conn.execute(everything).scalar_one(), True)
            estimate = _planner_rows(conn, select(t.jobs.c.id).where(*conditions))
        return JobCount(max(estimate, exact_up_to + 1), False)

    def jobs_in(self, statuses: Iterable[JobStatus], context: str | None = None) -> list[Job]:
        conditions: list[ColumnElement[bool]] = [t.jobs.c.status.in_([s.value for s in statuses])]
        if context is not None:
            conditions.append(t.jobs.c.context == context)
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.jobs).where(*conditions)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def oldest_in(self, statuses: Iterable[JobStatus], limit: int,
                  after: JobBrief | None = None) -> list[JobBrief]:
        """Up to ``limit`` jobs in ``statuses``, oldest first, starting after ``after`` (the last
        one of the previous batch): pages through any number of jobs, each page a bounded
        read on an index ((status, create_time) or (create_time), as the planner sees fit)."""
        c = t.jobs.c
        conditions: list[ColumnElement[bool]] = [c.status.in_([s.value for s in statuses])]
        if after is not None:
            conditions += [c.create_time >= after.create_time,
                           or_(c.create_time > after.create_time,
                               and_(c.create_time == after.create_time, c.id > after.id))]
        statement = (
            select(c.id, c.context, c.status, c.create_time, c.worker_id, c.start_timeout_ms,
                   c.start_time, c.environment)
            .where(*conditions)
            .order_by(c.create_time, c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
        return [JobBrief(i, context, JobStatus(status), created, worker, timeout, started, env)
                for i, context, status, created, worker, timeout, started, env in rows]

    def job_stats(self, since_ms: int, until_ms: int, bucket_ms: int,
                  run_lookback_ms: int, submitter: str | None = None) -> dict[str, Any]:
        """Jobs of the window ``[since_ms, until_ms)`` cut into buckets of ``bucket_ms`` (bucket
        ``i`` starts at ``since_ms + i * bucket_ms``), aggregated in SQL:

        - ``submitted``: ``{bucket: n}`` by create_time;
        - ``ended``: ``{bucket: {status: n}}`` by end_time;
        - ``runTimes``: ``{bucket: {count, p50, p95}}`` and ``runTime``: ``{count, p50, p90,
          p95, p99, max}``, run times (end_time - start_time, ms) of the jobs that ran and ended
          in the window; nearest-rank percentiles, from window functions (SQLite and PostgreSQL);
        - ``active``: ``{status: n}`` of the jobs not ended, whatever their age.

        ``submitter``: only that submitter's jobs; None: everyone's.

        Every read of a window is bounded by create_time, so it is a range of the (create_time)
        index however many jobs there are: a job that ended in the window counts if it was
        created at most ``run_lookback_ms`` before the window.
        """
        c = t.jobs.c
        owned = true() if submitter is None else c.submitter == submitter
        ended = and_(c.create_time >= since_ms - run_lookback_ms, c.create_time < until_ms,
                     c.end_time >= since_ms, c.end_time < until_ms, owned)
        end_bucket = ((c.end_time - since_ms) // bucket_ms).label("bucket")
        create_bucket = ((c.create_time - since_ms) // bucket_ms).label("bucket")
        runs = (select(end_bucket, (c.end_time - c.start_time).label("ms"))
                .where(ended, c.start_time.is_not(None)).subquery())
        ranked = select(
            runs.c.bucket, runs.c.ms,
            func.row_number().over(partition_by=runs.c.bucket, order_by=runs.c.ms).label("rn"),
            func.count().over(partition_by=runs.c.bucket).label("n"),
            func.row_number().over(order_by=runs.c.ms).label("rn_all"),
            func.count().over().label("n_all"),
        ).subquery()
        r = ranked.c

        def ms(value: Any) -> int | None:
            return None if value is None else int(value)

        def nearest_rank(rank: Any, count: Any, percent: int) -> Any:
            # The value of rank ceil(percent * count / 100), in integer arithmetic.
            return func.max(case((rank == (count * percent + 99) // 100, r.ms)))

        statements = {
            "submitted": select(create_bucket, func.count())
            .where(c.create_time >= since_ms, c.create_time < until_ms, owned)
            .group_by(create_bucket),
            "ended": select(end_bucket, c.status, func.count()).where(ended)
            .group_by(end_bucket, c.status),
            "runTimes": select(r.bucket, func.count(), nearest_rank(r.rn, r.n, 50),
                               nearest_rank(r.rn, r.n, 95)).group_by(r.bucket),
            "runTime": select(func.count(), *(nearest_rank(r.rn_all, r.n_all, p)
                                              for p in (50, 90, 95, 99)), func.max(r.ms)),
            "active": select(c.status, func.count())
            .where(c.status.in_([s.value for s in JobStatus if not s.terminal]), owned)
            .group_by(c.status),
        }
        with self.engine.connect() as conn:
            rows = {name: conn.execute(s).all() for name, s in statements.items()}
        ended_counts: dict[int, dict[str, int]] = {}
        for bucket, status, n in rows["ended"]:
            ended_counts.setdefault(int(bucket), {})[status] = n
        count, p50, p90, p95, p99, longest = rows["runTime"][0]
        return {
            "submitted": {int(bucket): n for bucket, n in rows["submitted"]},
            "ended": ended_counts,
            "runTimes": {int(bucket): {"count": n, "p50": ms(a), "p95": ms(b)}
                         for bucket, n, a, b in rows["runTimes"]},
            "runTime": {"count": count, "p50": ms(p50), "p90": ms(p90), "p95": ms(p95),
                        "p99": ms(p99), "max": ms(longest)},
            "active": {status: n for status, n in rows["active"]},
        }

    def append_logs(self, job_id: str, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with writing(self.engine) as conn:
            _without_waiting_for_disk(conn)
            conn.execute(insert(t.job_logs), _log_rows(job_id, lines))

    def job_logs(self, job_id: str, offset: int = 0) -> list[LogLine]:
        """The job's log records in order, without the first ``offset`` of them."""
        statement = (
            select(t.job_logs.c.ts_ms, t.job_logs.c.level, t.job_logs.c.message)
            .where(t.job_logs.c.job_id == job_id)
            .order_by(t.job_logs.c.id)
        )
        if offset:
            statement = statement.offset(offset)
        with self.engine.connect() as conn:
            return [LogLine(**r) for r in conn.execute(statement).mappings()]


# Every job is inserted, claimed, ended and read through these statements: each is compiled
# once per dialect and shape and run on the driver's cursor (jobs/driver_sql.py), its
# parameters and rows converted here.
_SET = "new_"


@functools.lru_cache(maxsize=128)
def _transition_statement(dialect: Dialect, target: JobStatus, sources: frozenset[JobStatus],
                          columns: tuple[str, ...]) -> DriverStatement:
    return compiled(
        update(t.jobs)
        # The statuses as SQL literals (our own enum's words): every parameter is the caller's.
        .where(t.jobs.c.id == bindparam("job_id"),
               t.jobs.c.status.in_([_literal(s) for s in sorted(sources)]))
        .values(status=_literal(target), **{name: bindparam(_SET + name) for name in columns})
        .returning(*t.jobs.c),
        dialect,
    )


def _literal(status: JobStatus) -> ColumnElement[str]:
    return literal_column(f"'{status.value}'")


@functools.lru_cache(maxsize=32)
def _insert_statement(dialect: Dialect, columns: tuple[str, ...]) -> DriverStatement:
    return compiled(insert(t.jobs).values(
        {name: bindparam(name, type_=t.jobs.c[name].type) for name in columns}), dialect)


@functools.lru_cache(maxsize=32)
def _logs_statement(dialect: Dialect) -> DriverStatement:
    return compiled(insert(t.job_logs).values(
        {name: bindparam(name, type_=t.job_logs.c[name].type) for name in _LOG_COLUMNS}), dialect)


@functools.lru_cache(maxsize=32)
def _get_statement(dialect: Dialect, raw_values: bool) -> DriverStatement:
    columns = _raw_columns() if raw_values else list(t.jobs.c)
    return compiled(select(*columns).where(t.jobs.c.id == bindparam("job_id")), dialect)


_COLUMN_NAMES = tuple(c.name for c in t.jobs.c)
_JSON_TYPED = tuple(c.name for c in t.jobs.c if isinstance(c.type, JSON))


def _json_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with those of JSON columns as their JSON text (None too: JSON null, as
    SQLAlchemy's JSON type writes it)."""
    return {name: json_text(value) if name in _JSON_TYPED else value
            for name, value in values.items()}


def _driver_job(row: Sequence[Any], dialect_name: str, raw_values: bool = False) -> Job:
    """The job of a row of all the table's columns, in order, as the driver gives it: JSON
    already parsed on PostgreSQL (psycopg's loader is db.json_value), JSON text on SQLite
    (or a number: the column's numeric affinity stores JSON 1 as the integer 1)."""
    values = dict(zip(_COLUMN_NAMES, row, strict=True))
    values["status"] = JobStatus(values["status"])
    for name in _JSON_TYPED:
        value = values[name]
        if raw_values and name in _JSON_COLUMNS:
            values[name] = None if value is None else RawJSON(value)
        elif dialect_name == "sqlite" and isinstance(value, str):
            values[name] = json_value(value)
    return Job(**values)


def _new_row(new: NewJob, created: int) -> dict[str, Any]:
    # Shallow: dataclasses.asdict would deep-copy every job's arguments for nothing.
    row = {**vars(new), "status": new.status.value, "create_time": created}
    if new.cached_from is None:
        del row["result"], row["cached_from"]
    else:
        row["end_time"] = created
    return row


_BIG_COLUMNS = ("arguments", "result", "error")
_JSON_COLUMNS = ("arguments", "result")


@dataclass(frozen=True)
class RawJSON:
    """A JSON document as the database holds it, unparsed."""

    text: str


def _raw_columns() -> list[Any]:
    return [cast(c, Text).label(c.name) if c.name in _JSON_COLUMNS else c for c in t.jobs.c]


class _stored_bytes(FunctionElement[int]):
    """The size in bytes of a JSON or text column as stored, computed by the database."""

    type = BigInteger()
    inherit_cache = True


@compiles(_stored_bytes)
def _stored_bytes_postgresql(element: _stored_bytes, compiler: Any, **kw: Any) -> str:
    return f"octet_length(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


@compiles(_stored_bytes, "sqlite")
def _stored_bytes_sqlite(element: _stored_bytes, compiler: Any, **kw: Any) -> str:
    # length() of text counts characters; of a blob, bytes (SQLite has no octet_length
    # before 3.43).
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


def _page(query: JobQuery) -> Select[Any]:
    c = t.jobs.c
    statuses = sorted(set(query.statuses))
    if len(statuses) < 2:
        return (select(t.jobs).where(*_conditions(query)).order_by(*_NEWEST_FIRST)
                .limit(query.limit).offset(query.offset))
    # Newest first per status (each a walk down its (status, create_time, id) index), merged:
    # filtered on its own, the create_time index is walked past every job of the other
    # statuses first (the benchmark's 87,000 queued jobs before the first finished one: a
    # page at offset 1,000 of a million jobs took 16 ms, now 3).
    others = _conditions(replace(query, statuses=()))
    runs = [select(c.id, c.create_time).where(c.status == status, *others)
            .order_by(*_NEWEST_FIRST).limit(query.offset + query.limit).subquery()
            for status in statuses]
    merged = union_all(*(select(run) for run in runs)).subquery()
    page = (select(merged).order_by(merged.c.create_time.desc(), merged.c.id.desc())
            .limit(query.limit).offset(query.offset).subquery())
    # The LIMIT again: _capped_page relies on it to keep its sizes' subquery apart.
    return (select(t.jobs).join(page, page.c.id == c.id)
            .order_by(page.c.create_time.desc(), page.c.id.desc()).limit(query.limit))


_NEWEST_FIRST = (t.jobs.c.create_time.desc(), t.jobs.c.id.desc())


def _capped_page(page: Select[Any], max_bytes: int) -> Select[Any]:
    """``page`` with each big column's value only when it is at most ``max_bytes`` (NULL
    otherwise), plus its size as ``<name>_bytes``. The sizes are taken once per row, in a
    subquery of the page alone (its LIMIT keeps the database from merging it into the outer
    query): a size is a read of the whole value (PostgreSQL detoasts it), not to be repeated
    for the CASE."""
    c = t.jobs.c
    sizes = (page.with_only_columns(c.id, c.create_time,
                                    *(_stored_bytes(c[n]).label(f"{n}_bytes")
                                      for n in _BIG_COLUMNS))
             .subquery())
    columns: list[Any] = []
    for column in c:
        if column.name not in _BIG_COLUMNS:
            columns.append(column)
            continue
        size = sizes.c[f"{column.name}_bytes"]
        columns += [type_coerce(case((size <= max_bytes, column)), column.type)
                    .label(column.name), size]
    return (select(*columns).select_from(sizes.join(t.jobs, sizes.c.id == c.id))
            .order_by(sizes.c.create_time.desc(), sizes.c.id.desc()))


def _capped_job(row: RowMapping, max_bytes: int) -> Job:
    values = dict(row)
    oversized = {}
    for name in _BIG_COLUMNS:
        size = values.pop(f"{name}_bytes")
        if size is not None and size > max_bytes:
            oversized[name] = size
    return Job.from_row({**values, "oversized": oversized})


def oversized_marker(job_id: str, size: int | None = None) -> dict[str, Any]:
    """What stands in, on the wire, for a value of the job left out for its size: the size of
    its JSON when known (listings: the database's), and where to read it."""
    marker: dict[str, Any] = {"truncated": True}
    if size is not None:
        marker["bytes"] = size
    marker["url"] = f"/v2/api/jobs/{job_id}"
    return marker


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"job {job_id} does not exist", {"jobId": job_id})


_LOG_COLUMNS = ("job_id", "ts_ms", "level", "message")


def _log_rows(job_id: str, lines: Sequence[LogLine]) -> list[dict[str, Any]]:
    return [{"job_id": job_id, "ts_ms": line.ts_ms, "level": line.level, "message": line.message}
            for line in lines]


def _planner_rows(conn: Connection, statement: Any) -> int:
    compiled = statement.compile(dialect=conn.dialect,
                                 compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
    return int(plan.scalar_one()[0]["Plan"]["Plan Rows"])


def _without_waiting_for_disk(conn: Connection) -> None:
    """Commit this transaction without waiting for its WAL flush (PostgreSQL): log lines and
    progress only, never a state change. Nothing is lost that matters: WAL is flushed in order,
    so the job's end, committed synchronously later, makes these durable with it; only a server
    crash before that could drop them (a crash that also loses the job's end, which the
    reconciler then settles)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _conditions(query: JobQuery) -> list[Any]:
    c = t.jobs.c
    conditions: list[Any] = []
    if query.statuses:
        conditions.append(c.status.in_(list(query.statuses)))
    for column, value in (
        (c.function, query.function),
        (c.context, query.context),
        (c.worker_id, query.worker_id),
        (c.external_id, query.external_id),
        (c.submitter, query.submitter),
        (c.schedule, query.schedule),
    ):
        if value is not None:
            conditions.append(column == value)
    return conditions
