"""The database tables (SQLAlchemy Core). ``migrations/`` creates them; keep both in step.

Times are epoch milliseconds (Mist's API speaks them), so no time zone ever needs converting.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    }
)

# Content-addressed: a job keeps the sha it was submitted with, so replacing an artifact
# never changes the code of a job already queued.
artifact_blobs = Table(
    "artifact_blobs",
    metadata,
    Column("sha1", String(40), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("sha1", String(40), ForeignKey("artifact_blobs.sha1"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Its Python requirements, normalized (jobs/requirements.py), one a line; NULL: none. Its
    # functions run in the environment they make (environments.id); NULL: the base one.
    Column("requirements", Text, nullable=True),
    Column("environment", String(16), nullable=True),
)

# Each environment's requirements by its id (a digest of them and the Python version): what a
# worker host builds an environment from when a job names it (jobs/environments.py).
environments = Table(
    "environments",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("requirements", Text, nullable=False),
    Column("python", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

functions = Table(
    "functions",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("path", String(255), nullable=False),
    Column("class_name", String(255), nullable=False),
    Column("default_context", String(255), nullable=False),
    Column("lang", String(16), nullable=False),
    # jobs.signatures.model.Signature.to_dict(); NULL if deployed with ?force=true (not inspected).
    Column("signature", JSON, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # How long an identical call's result is reused (jobs/result_cache.py); NULL: never.
    Column("cache_ms", BigInteger, nullable=True),
)

contexts = Table(
    "contexts",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("spark_conf", JSON, nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("worker_mode", String(16), nullable=False),
    Column("precreated", Boolean, nullable=False),
    Column("downtime_s", BigInteger, nullable=True),  # NULL: Inf
    Column("max_conn_failures", Integer, nullable=False),
    Column("run_options", Text, nullable=False),
    Column("streaming_duration_s", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Defaults for jobs that name none; NULL: unbounded.
    Column("start_timeout_s", BigInteger, nullable=True),
    Column("perform_timeout_s", BigInteger, nullable=True),
    # settings.ENGINES: what runs the context's jobs.
    Column("engine", String(16), nullable=False, server_default="spark"),
)

# How a context's workers are doing, apart from its definition (which `default` may not even
# have a row for): worker failures in a row, and why it is broken once they reach
# maxConnFailures. Updating the context deletes the row: that is the repair.
context_health = Table(
    "context_health",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Text, nullable=True),
    Column("broken_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("function", String(255), nullable=False),
    Column("context", String(255), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("file_path", String(255), nullable=False),
    Column("class_name", String(255), nullable=False),
    Column("artifact_sha1", String(40), nullable=True),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("external_id", String(255), nullable=True),
    Column("create_time", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=True),
    Column("end_time", BigInteger, nullable=True),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("worker_id", String(255), nullable=True),
    Column("start_timeout_ms", BigInteger, nullable=True),
    Column("perform_timeout_ms", BigInteger, nullable=True),
    Column("progress", JSON, nullable=True),
    # Who submitted it: "key:<name>", "jwt:<subject>", or "anonymous" with authentication off.
    Column("submitter", String(255), nullable=True),
    # A digest of (submitter, function, Idempotency-Key or externalId): a retried submit finds
    # the job it created the first time instead of creating another.
    Column("idempotency_key", String(64), nullable=True),
    # Answered from the result cache: the job whose result this one repeats (it never ran).
    Column("cached_from", String(36), nullable=True),
    # Created by a schedule (a tick, or its "run now"): the schedule's name.
    Column("schedule", String(255), nullable=True),
    # spark-jobserver's per-submit callback: told of the job's end (jobs/webhooks.py).
    Column("callback_url", Text, nullable=True),
    # The environment its function's artifact had when it was submitted (environments.id):
    # its queue and its workers' (jobs/queue.py); NULL: the base environment.
    Column("environment", String(16), nullable=True),
    # Every listing reads newest first by (create_time, id); each filter gets an index in that
    # exact order, so a page is a short walk down one index, never a sort of all the matches.
    Index(None, "create_time", "id"),
    Index(None, "status", "create_time", "id"),
    Index(None, "function", "create_time", "id"),
    Index(None, "context", "create_time", "id"),
    Index(None, "worker_id", "create_time", "id"),
    # A submit key lists only its own jobs, on top of any other filter.
    Index(None, "submitter", "create_time", "id"),
    Index(None, "schedule", "create_time", "id"),
    Index(None, "external_id"),
    Index(None, "idempotency_key", unique=True),
)

# API keys: only a SHA-256 of each secret is kept (keys are random 256-bit tokens, so a slow
# password hash would add nothing but latency). ``prefix`` is the token's public start, shown
# in listings so a user can tell keys apart.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    # submit keys may be limited to these functions; NULL: any function.
    Column("functions", JSON, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
)

job_logs = Table(
    "job_logs",
    metadata,
    # SQLite autoincrements only an INTEGER primary key.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("job_id", String(36), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Index(None, "job_id", "id"),
)

# Models (jobs/models.py): pickled objects saved under a name, one version per distinct content.
# Content-addressed like artifact_blobs, by SHA-256: the version's id is its content's hash.
model_blobs = Table(
    "model_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The live pointer: what ``models.load(name)`` gives. Workers read it by primary key to learn
# whether a newer version went live, so it is one short row per model. NULL: none yet.
models = Table(
    "models",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("live_sha256", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(255), ForeignKey("models.name"), primary_key=True),
    Column("sha256", String(64), ForeignKey("model_blobs.sha256"), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # "job:<id>" for a version a job saved, else the uploader ("key:<name>", "jwt:<subject>",
    # "anonymous") or "local" (sparkgate run --local).
    Column("created_by", String(255), nullable=False),
    # When it last became live; a roll back goes to the latest one before the live one's.
    Column("promoted_at", BigInteger, nullable=True),
)

# Schedules (jobs/schedules.py): a function called with fixed arguments at the times of a cron
# expression. The scheduler (jobs/scheduler.py) keeps the tick state here, so any gateway can
# carry on where another stopped; each tick's job is made unique by its idempotency key.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("function", String(255), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("context", String(255), nullable=True),  # NULL: the function's default
    Column("cron", String(255), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("missed", String(8), nullable=False),
    Column("overlap", String(8), nullable=False),
    # Who saved it last; its ticks' jobs are submitted as "schedule:<name>".
    Column("saved_by", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Bumped by every save: a scheduler's write about an older definition changes nothing.
    Column("revision", Integer, nullable=False),
    # The earliest tick not yet handled; NULL while paused.
    Column("next_tick_ms", BigInteger, nullable=True),
    # overlap = queue: the tick waiting for the previous run to end.
    Column("held_tick_ms", BigInteger, nullable=True),
    # The last tick that could not be submitted (function gone, arguments no longer valid).
    Column("last_error", Text, nullable=True),
    Column("last_error_ms", BigInteger, nullable=True),
    Index(None, "next_tick_ms"),
)

# Webhooks (jobs/webhooks.py): subscriptions to job events, and the outbox of deliveries. A
# delivery row is written in the same transaction as the job's status change it reports, so a
# change that happened is never left unreported; the sender (sparkgate/webhook_sender.py)
# attempts them, at least once each, and records every attempt.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    # jobs.webhooks.EVENTS that it wants, as a JSON list.
    Column("events", JSON, nullable=False),
    # Used to sign deliveries (HMAC-SHA256): kept as given, since signing needs it.
    Column("secret", String(255), nullable=False),
    # Only the jobs of this function / schedule; NULL: any.
    Column("function", String(255), nullable=True),
    Column("schedule", String(255), nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    # NULL: a job's own callbackUrl.
    Column("webhook_id", String(36), nullable=True),
    Column("url", Text, nullable=False),
    Column("job_id", String(36), nullable=False),
    Column("event", String(16), nullable=False),
    # pending, delivered, or failed (given up after webhook_retry_for_s).
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # When it is due; while an attempt is under way, when that attempt's claim runs out.
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    # The body as first sent: every retry sends the same bytes.
    Column("body", Text, nullable=True),
    Index(None, "status", "next_attempt_ms"),
    Index(None, "webhook_id", "created_at"),
    Index(None, "job_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("delivery_id", String(36), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    # The receiver's HTTP status; NULL if none came (refused, timed out).
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Index(None, "delivery_id", "id"),
)
