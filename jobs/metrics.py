"""What monitoring counts, read from the shared state when it is asked: the database (jobs,
webhook deliveries) and Redis (queues, live workers). Every gateway reads the same rows, so
every gateway process answers the same numbers (docs/metrics.md).

Jobs are counted by function, context and status, with the distribution of their run times
(end - start: the jobs that ran and ended) and of their queue waits (start - create: the jobs
that started); webhook deliveries by status. What Prometheus takes as counters only grows: a
job's or a delivery's final status never changes, start and end times are written once, and
rows are not deleted (but for a queued job whose queueing failed, and the pending deliveries
of a deleted webhook, neither of them final).

Summing a million jobs at every scrape is a walk over the whole table: 0.2 s on PostgreSQL for
the counts alone, 0.9 s with the histograms, several seconds on SQLite (docs/metrics.md). So a
:class:`Totals` sums each row once it can no longer change: rows created more than
``margin_ms`` ago that are final are folded into running sums; each read then sums only the
rows created since (a range of an index), the older ones not final yet (few: read through the
status index) and, by id, those of them that became final since. The first read of a process
walks the table once; the others cost milliseconds. The sums are exact at every read, in every
process, as long as no row is written with a creation time more than ``margin_ms`` in the past
(a gateway host's clock that far behind the others').
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    case,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sparkgate.jobs import tables as t
from sparkgate.jobs.contexts import DEFAULT_CONTEXT
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.queue import QUEUE_KEY_PREFIX, QUEUES_KEY, lane_of, queue_key
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.webhooks import DELIVERED, FAILED, PENDING
from sparkgate.jobs.worker_registry import WorkerRegistry

#: Upper bounds (ms) of the run time buckets: a warm no-op takes milliseconds, a batch hours.
RUN_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
                  300_000, 900_000, 3_600_000)
#: Of the queue wait buckets: a warm worker takes a job within a millisecond or two; one that
#: starts first waits for its Spark (seconds); a long queue, minutes.
WAIT_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
                   60_000, 300_000, 900_000, 3_600_000)
#: Rows created this long ago or more are summed once for all when final (see Totals).
MARGIN_MS = 5 * 60_000
#: Ids per statement when reading rows by id.
IDS_PER_READ = 500

Key = tuple[str, ...]


@dataclass
class Group:
    """Rows of one key: how many, and for jobs their run times and queue waits, per bucket
    (``run[i]``: how many fell in bucket i, the last one above every bound; not cumulative),
    with their sums in ms."""

    count: int = 0
    run: list[int] = field(default_factory=lambda: [0] * (len(RUN_BUCKETS_MS) + 1))
    run_ms: int = 0
    wait: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS_MS) + 1))
    wait_ms: int = 0

    def add(self, other: Group) -> None:
        self.count += other.count
        self.run = [a + b for a, b in zip(self.run, other.run, strict=True)]
        self.run_ms += other.run_ms
        self.wait = [a + b for a, b in zip(self.wait, other.wait, strict=True)]
        self.wait_ms += other.wait_ms

    def copy(self) -> Group:
        return Group(self.count, list(self.run), self.run_ms, list(self.wait), self.wait_ms)


Groups = dict[Key, Group]


def add_groups(into: Groups, groups: Iterable[tuple[Key, Group]]) -> None:
    for key, group in groups:
        if key in into:
            into[key].add(group)
        else:
            into[key] = group.copy()


class Totals:
    """Sums over a table whose rows reach a final status and then never change, kept from one
    read to the next (see the module's docstring). A subclass says how its rows are keyed,
    summed and windowed by creation."""

    active: tuple[str, ...]
    final: tuple[str, ...]
    _id: ColumnElement[str]
    _status: ColumnElement[str]

    def __init__(self, margin_ms: int = MARGIN_MS) -> None:
        self.margin_ms = margin_ms
        #: Rows created before this time are in ``_folded`` or ``_pending``.
        self._folded_until: int | None = None
        #: Those that were final, summed.
        self._folded: Groups = {}
        #: The others, by id: each is folded once it is final.
        self._pending: set[str] = set()

    def read(self, conn: Connection, now: int) -> Groups:
        """The sums of every row, as they are now."""
        self._fold(conn, now - self.margin_ms)
        unsettled = self._settle(conn)
        groups = {key: group.copy() for key, group in self._folded.items()}
        add_groups(groups, unsettled)
        assert self._folded_until is not None
        add_groups(groups, ((key, group) for _, key, group in
                            self._summed(conn, [self._created_since(self._folded_until)])))
        return groups

    def _fold(self, conn: Connection, until: int) -> None:
        """Sum the final rows created before ``until`` (not summed yet), and note the others:
        one statement, so that no row is seen in both ways or in neither."""
        since = self._folded_until
        if since is not None and until <= since:
            return
        window = [self._created_before(until)]
        if since is not None:
            window.append(self._created_since(since))
        folded = {key: group.copy() for key, group in self._folded.items()}
        pending = set(self._pending)
        for row_id, key, group in self._summed(conn, window, with_ids=True):
            if row_id is None:
                add_groups(folded, [(key, group)])
            else:
                pending.add(row_id)
        self._folded, self._pending, self._folded_until = folded, pending, until

    def _settle(self, conn: Connection) -> list[tuple[Key, Group]]:
        """The folded rows not final yet, as they are now; those of them that became final
        since are folded for good (and those deleted since, forgotten)."""
        if not self._pending:
            return []
        assert self._folded_until is not None
        unsettled = self._rows(conn, [self._status.in_(self.active),
                                      self._created_before(self._folded_until)])
        gone = self._pending - {row_id for row_id, _, _ in unsettled}
        settled = [(key, group) for chunk in _chunks(sorted(gone), IDS_PER_READ)
                   for _, key, group in self._rows(conn, [self._id.in_(chunk),
                                                          self._status.in_(self.final)])]
        add_groups(self._folded, settled)
        self._pending -= gone
        return [(key, group) for _, key, group in unsettled]

    # -- what a table says -------------------------------------------------------------------

    def _created_before(self, ms: int) -> ColumnElement[bool]:
        raise NotImplementedError

    def _created_since(self, ms: int) -> ColumnElement[bool]:
        raise NotImplementedError

    def _summed(self, conn: Connection, window: list[ColumnElement[bool]],
                with_ids: bool = False) -> list[tuple[str | None, Key, Group]]:
        """The rows created in ``window`` summed by key; ``with_ids``: the final ones only,
        and each of the others on its own, with its id."""
        raise NotImplementedError

    def _rows(self, conn: Connection,
              conditions: list[ColumnElement[bool]]) -> list[tuple[str, Key, Group]]:
        """Each row that meets ``conditions``, as a group of one."""
        raise NotImplementedError


class JobTotals(Totals):
    """Jobs by (function, context, status), with their run times and queue waits."""

    active = tuple(s.value for s in JobStatus if not s.terminal)
    final = tuple(s.value for s in JobStatus if s.terminal)
    _id = t.jobs.c.id
    _status = t.jobs.c.status

    # A range of the (create_time) index.
    def _created_before(self, ms: int) -> ColumnElement[bool]:
        return t.jobs.c.create_time < ms

    def _created_since(self, ms: int) -> ColumnElement[bool]:
        return t.jobs.c.create_time >= ms

    def _summed(self, conn: Connection, window: list[ColumnElement[bool]],
                with_ids: bool = False) -> list[tuple[str | None, Key, Group]]:
        c = t.jobs.c
        run, wait = c.end_time - c.start_time, c.start_time - c.create_time
        rows = select(c.function, c.context, c.status,
                      _bucket(run, RUN_BUCKETS_MS).label("rb"), _not_negative(run).label("run"),
                      _bucket(wait, WAIT_BUCKETS_MS).label("wb"),
                      _not_negative(wait).label("wait")).where(*window).subquery()
        keys = (rows.c.function, rows.c.context, rows.c.status, rows.c.rb, rows.c.wb)
        summed = select(*keys, func.count(), func.coalesce(func.sum(rows.c.run), 0),
                        func.coalesce(func.sum(rows.c.wait), 0), null())
        statement: Any = summed.group_by(*keys)
        if with_ids:
            # Straight from the table: a range of the (status, create_time) index.
            each = select(c.function, c.context, c.status, literal(-1), literal(-1),
                          literal(1), literal(0), literal(0), c.id).where(
                c.status.in_(self.active), *window)
            statement = union_all(
                summed.where(rows.c.status.in_(self.final)).group_by(*keys), each)
        found: list[tuple[str | None, Key, Group]] = []
        for function, context, status, rb, wb, n, run_ms, wait_ms, job_id in \
                conn.execute(statement):
            group = Group(count=n)
            if rb >= 0:
                group.run[rb], group.run_ms = n, int(run_ms)
            if wb >= 0:
                group.wait[wb], group.wait_ms = n, int(wait_ms)
            found.append((job_id, (function, context, status), group))
        return found

    def _rows(self, conn: Connection,
              conditions: list[ColumnElement[bool]]) -> list[tuple[str, Key, Group]]:
        c = t.jobs.c
        rows = conn.execute(select(c.id, c.function, c.context, c.status, c.create_time,
                                   c.start_time, c.end_time).where(*conditions))
        return [(row.id, (row.function, row.context, row.status), _job_group(row))
                for row in rows]


def _job_group(row: Any) -> Group:
    group = Group(count=1)
    if row.start_time is not None:
        wait = max(0, row.start_time - row.create_time)
        group.wait[bisect.bisect_left(WAIT_BUCKETS_MS, wait)], group.wait_ms = 1, wait
        if row.end_time is not None:
            run = max(0, row.end_time - row.start_time)
            group.run[bisect.bisect_left(RUN_BUCKETS_MS, run)], group.run_ms = 1, run
    return group


class DeliveryTotals(Totals):
    """Webhook deliveries by (status,)."""

    active = (PENDING,)
    final = (DELIVERED, FAILED)
    _id = t.webhook_deliveries.c.id
    _status = t.webhook_deliveries.c.status

    # Deliveries' ids are UUIDv7s, which begin with their creation time: a range of the
    # primary key (created_at has no index of its own).
    def _created_before(self, ms: int) -> ColumnElement[bool]:
        return t.webhook_deliveries.c.id < _uuid7_prefix(ms)

    def _created_since(self, ms: int) -> ColumnElement[bool]:
        return t.webhook_deliveries.c.id >= _uuid7_prefix(ms)

    def _summed(self, conn: Connection, window: list[ColumnElement[bool]],
                with_ids: bool = False) -> list[tuple[str | None, Key, Group]]:
        d = t.webhook_deliveries.c
        statement: Any = select(d.status, func.count(), null()).where(*window)
        if with_ids:
            each = select(d.status, literal(1), d.id).where(d.status.in_(self.active), *window)
            statement = union_all(statement.where(d.status.in_(self.final))
                                  .group_by(d.status), each)
        else:
            statement = statement.group_by(d.status)
        return [(row_id, (status,), Group(count=n))
                for status, n, row_id in conn.execute(statement)]

    def _rows(self, conn: Connection,
              conditions: list[ColumnElement[bool]]) -> list[tuple[str, Key, Group]]:
        d = t.webhook_deliveries.c
        rows = conn.execute(select(d.id, d.status).where(*conditions))
        return [(row_id, (status,), Group(count=1)) for row_id, status in rows]


def _uuid7_prefix(ms: int) -> str:
    """What every UUIDv7 made at ``ms`` or later sorts at or after, and every earlier one
    before: its first 48 bits, as the text of a UUID has them."""
    digits = f"{ms:012x}"
    return f"{digits[:8]}-{digits[8:]}"


@dataclass
class StoredCounts:
    """Jobs (by (function, context, status)) and webhook deliveries (by (status,)), now."""

    jobs: Groups
    deliveries: Groups
    read_s: float


class StoredTotals:
    """Both tables' totals, read in one connection; one per process (reads take turns)."""

    def __init__(self, engine: Engine, margin_ms: int = MARGIN_MS) -> None:
        self.engine = engine
        self.jobs = JobTotals(margin_ms)
        self.deliveries = DeliveryTotals(margin_ms)
        self._lock = threading.Lock()

    def read(self) -> StoredCounts:
        with self._lock:
            began = time.perf_counter()
            now = now_ms()
            with self.engine.connect() as conn:
                jobs = self.jobs.read(conn, now)
                deliveries = self.deliveries.read(conn, now)
            return StoredCounts(jobs, deliveries, time.perf_counter() - began)


def _not_negative(ms: ColumnElement[Any]) -> ColumnElement[Any]:
    """A difference of two times, 0 when negative (the clocks of two hosts a little apart: a
    sum that went down would read as a reset); NULL when either time is."""
    return case((ms < 0, literal(0)), else_=ms)


def _bucket(ms: ColumnElement[Any], bounds: Sequence[int]) -> ColumnElement[int]:
    """The index of the bucket a whole number of ms falls in: how many ``bounds`` are below
    it (Prometheus's bounds are inclusive: ``ms <= bound`` is ``ms < bound + 1``); -1 for
    NULL (no observation)."""
    return _BucketIndex(ms, *(literal_column(str(bound + 1)) for bound in bounds))


class _BucketIndex(FunctionElement[int]):
    """``_bucket``: the value, then the first whole number above each bound."""

    type = Integer()
    inherit_cache = True


@compiles(_BucketIndex)
def _bucket_index_postgresql(element: _BucketIndex, compiler: Any, **kw: Any) -> str:
    # width_bucket: a binary search of a sorted array. A CASE of 18 comparisons made the
    # first read of a million jobs 3.3 s instead of 0.9 s (docs/metrics.md).
    value, *above = (compiler.process(c, **kw) for c in element.clauses)
    return f"coalesce(width_bucket({value}, ARRAY[{', '.join(above)}]::bigint[]), -1)"


@compiles(_BucketIndex, "sqlite")
def _bucket_index_sqlite(element: _BucketIndex, compiler: Any, **kw: Any) -> str:
    value, *above = (compiler.process(c, **kw) for c in element.clauses)
    whens = " ".join(f"WHEN {value} < {a} THEN {i}" for i, a in enumerate(above))
    return f"CASE WHEN {value} IS NULL THEN -1 {whens} ELSE {len(above)} END"


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[i:i + size] for i in range(0, len(items), size))


@dataclass
class QueueCounts:
    """Redis, read at one moment."""

    #: context -> jobs waiting in its RQ queue.
    depth: dict[str, int]
    #: (context, state) -> live workers.
    workers: dict[tuple[str, str], int]
    read_s: float


def queue_counts(redis: Redis, registry: WorkerRegistry, contexts: Sequence[str]) -> QueueCounts:
    """Queue lengths of ``contexts`` and of every other sparkgate queue RQ knows (0 for an
    empty one, so a context's series does not come and go), and the live workers."""
    began = time.perf_counter()
    known = {k.decode() if isinstance(k, bytes) else str(k) for k in redis.smembers(QUEUES_KEY)}
    # A context's depth counts its queues of every environment (jobs/queue.py).
    lanes = sorted({*((name, None) for name in (DEFAULT_CONTEXT, *contexts)),
                    *(lane for k in known if (lane := lane_of(k.removeprefix(QUEUE_KEY_PREFIX))))},
                   key=lambda lane: (lane[0], lane[1] or ""))
    with redis.pipeline(transaction=False) as pipe:
        for context, environment in lanes:
            pipe.llen(queue_key(context, environment))
        lengths = pipe.execute()
    depth: Counter[str] = Counter()
    for (context, _), length in zip(lanes, lengths, strict=True):
        depth[context] += length
    workers = Counter((w.context, w.state) for w in registry.live())
    return QueueCounts(dict(depth), dict(workers), time.perf_counter() - began)
