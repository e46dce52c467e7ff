"""The command line as a user meets it: clear messages instead of stack traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from sparkgate.jobs.migrate import alembic_config

CLI = [sys.executable, "-c", "from sparkgate.cli import main; main()"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def test_serve_without_java_says_how_to_get_it(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, but no java
    env["SPARKGATE_DATA_DIR"] = str(tmp_path / "data")
    done = run("serve", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "Spark needs Java 17 or newer" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path):
    done = run("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert not (tmp_path / "sparkgate-data").exists()  # it changed nothing


def test_a_typo_in_the_settings_is_reported(tmp_path: Path):
    env = {**os.environ, "SPARKGATE_PORTT": "1"}
    done = run("serve", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "unknown setting(s) portt" in done.stderr and "Traceback" not in done.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run("db", "upgrade", env={**os.environ, "SPARKGATE_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert f"at revision {head}" in done.stdout
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"jobs", "functions", "contexts", "artifacts", "job_logs", "context_health"} <= tables


def test_worker_needs_the_redis_url(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "SPARKGATE_REDIS_URL"}
    done = run("worker", env=env, cwd=tmp_path)
    assert done.returncode == 1 and "needs SPARKGATE_REDIS_URL" in done.stderr


def test_every_command_loads_and_a_worker_imports_no_client_side():
    """Commands of other modules are imported when run (sparkgate/lazy_group.py): each one
    listed by -h loads as itself, and importing the command line (a worker's start does)
    imports none of the client side's libraries."""
    done = run("-h")
    listing = done.stdout.split("Commands:")[1].splitlines()
    names = {line.split()[0] for line in listing if line.startswith("  ") and line.strip()}
    assert {"run", "deploy", "schedules", "jobs", "logs", "workers", "serve", "keys"} <= names
    loaded = subprocess.run(
        [sys.executable, "-c",
         "import click; from sparkgate.cli import main\n"
         "ctx = click.Context(main)\n"
         "assert all(main.get_command(ctx, n).name == n for n in main.list_commands(ctx))"],
        capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    fresh = subprocess.run(
        [sys.executable, "-c", "import sys; from sparkgate.cli import main; "
         "print(sorted(m for m in ('rich', 'croniter', 'sparkgate.remote') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120)
    assert fresh.stdout.strip() == "[]", fresh.stdout + fresh.stderr
