"""Alembic migrations for sparkgate's database; run them with ``sparkgate db upgrade``."""
