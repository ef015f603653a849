"""Alembic migrations of the telemetry schema (run by `nsm db upgrade` and on connect)."""
