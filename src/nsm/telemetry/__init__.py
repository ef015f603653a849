"""Telemetry: the `robot_telemetry` table, a never-blocking batched writer with a disk spool."""
