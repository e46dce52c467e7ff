"""Settings: defaults < TOML file < SPARKGATE_* environment; mistakes are reported, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.jobs.durations import format_duration, parse_duration
from sparkgate.jobs.errors import ConfigError
from sparkgate.jobs.settings import Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sparkgate.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment():
    settings = load_settings(environ={})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 2004)
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("sparkgate-data/sparkgate.db")
    assert settings.embedded_redis


def test_file_then_environment_override(tmp_path: Path):
    path = write(tmp_path, 'port = 3000\nhost = "127.0.0.2"\n[context]\nmax_jobs = 3\n'
                           'downtime_s = "10min"\nspark_conf = { "spark.master" = "local[2]" }\n')
    settings = load_settings(path, environ={"SPARKGATE_PORT": "4000",
                                            "SPARKGATE_CONTEXT_DOWNTIME_S": "Inf"})
    assert settings.port == 4000  # the environment wins
    assert settings.host == "127.0.0.2"
    assert settings.context.max_jobs == 3
    assert settings.context.downtime_s is None
    assert settings.context.spark_conf == {"spark.master": "local[2]"}


def test_config_path_from_environment(tmp_path: Path):
    path = write(tmp_path, "port = 3100\n")
    assert load_settings(environ={"SPARKGATE_CONFIG": str(path)}).port == 3100


@pytest.mark.parametrize(("text", "environ", "message"), [
    ("prot = 1\n", {}, "unknown setting(s) prot"),
    ("", {"SPARKGATE_PROT": "1"}, "unknown setting(s) prot"),
    ("[context]\nmax_job = 2\n", {}, "unknown setting(s) context.max_job"),
    ('port = "x"\n', {}, "setting port"),
    ("", {"SPARKGATE_DEPLOY_EXAMPLES": "maybe"}, "expected true or false"),
    ("", {"SPARKGATE_WORKER_TTL_S": "Inf"}, "must be finite"),
    ("", {"SPARKGATE_CONTEXT_SPARK_CONF": "[1]"}, "expected a table"),
    ("port = \n", {}, "not valid TOML"),
])
def test_mistakes_are_errors_that_name_the_setting(tmp_path, text, environ, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text), environ=environ)
    assert message in raised.value.message


def test_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_the_documented_config_file_loads_to_the_defaults():
    shipped = Path(__file__).parent.parent / "config" / "sparkgate.toml"
    assert load_settings(shipped, environ={}) == Settings()


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("5min", 300), ("1h", 3600), ("2 days", 172800), (7, 7),
    ("Inf", None), ("3600", 3600),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", "10 parsecs", "", True, float("nan")])
def test_bad_durations_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text, "startTimeout")


def test_format_duration_is_mist_style():
    assert [format_duration(v) for v in (None, 3600, 0.5)] == ["Inf", "3600s", "500ms"]


@pytest.mark.parametrize(("environ", "message"), [
    ({"SPARKGATE_PORT": "70000"}, "setting port: expected 1 to 65535"),
    ({"SPARKGATE_LOG_LEVEL": "LOUD"}, "setting log_level"),
    ({"SPARKGATE_CONTEXT_MAX_JOBS": "0"}, "setting context.max_jobs: expected at least 1"),
    ({"SPARKGATE_CONTEXT_WORKER_MODE": "both"}, "shared or exclusive"),
    ({"SPARKGATE_CONTEXT_DOWNTIME_S": "10ms"}, "setting context.downtime_s"),
    ({"SPARKGATE_WORKER_HEARTBEAT_S": "20s"}, "shorter than worker_ttl_s"),
    ({"SPARKGATE_WEBHOOK_TIMEOUT_S": "0s"}, "setting webhook_timeout_s: expected more than 0s"),
    ({"SPARKGATE_WEBHOOK_MAX_IN_FLIGHT": "0"}, "setting webhook_max_in_flight"),
    ({"SPARKGATE_CALLBACK_URL_ALLOWED": "ftp://files.example.com/"},
     "setting callback_url_allowed: expected URL prefixes"),
    ({"SPARKGATE_CALLBACK_URL_ALLOWED": "https://user@hooks.example.com/"},
     "setting callback_url_allowed"),
    ({"SPARKGATE_TRUSTED_NETWORKS": '{"10.0.0.1/8": "read"}'},
     "setting trusted_networks: expected networks like"),
    ({"SPARKGATE_TRUSTED_NETWORKS": '{"10.0.0.0/8": "admin"}'},
     "setting trusted_networks.10.0.0.0/8: expected read or submit (admin always needs"),
])
def test_values_out_of_range_are_errors(environ, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(environ=environ)
    assert message in raised.value.message
