"""The telemetry rows a robot logs, built in one place: the payloads `robot_telemetry` holds
and the ingest service checks (`nsm.telemetry.ingest.SCHEMAS`; a test checks every builder
against them). `nsm demo`, db_bridge_node and `nsm sim telemetry` all log through these.

Unknown values (NaN: a real arm's battery percentage without a pack curve) are stored as
JSON null, so `(payload->>'value')::float` reads NULL in SQL, never a made-up number.
"""
import math
from collections.abc import Sequence

import numpy as np


def _floats(values) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def _float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def joint_states(names: Sequence[str], position, velocity, effort) -> dict:
    return {"name": list(names), "position": _floats(position), "velocity": _floats(velocity),
            "effort": _floats(effort)}


def joint_commands(names: Sequence[str], position) -> dict:
    return {"name": list(names), "position": _floats(position)}


def battery(voltage: float, current: float, percentage: float) -> dict:
    """`value` is percent (what the AI team queries); current is the draw in A."""
    return {"value": _float(100.0 * percentage), "unit": "percent", "voltage": _float(voltage),
            "current": _float(current)}


def loop_timing(period_s: float, compute_s: float, step: int) -> dict:
    return {"value": 1e3 * period_s, "compute_ms": 1e3 * compute_s, "step": step}


def episode(path: str, success: bool | None, frames: int, duration_s: float, policy: str) -> dict:
    """One recorded episode, logged when it ends: the fleet's dashboard counts these."""
    return {"path": path, "success": None if success is None else bool(success), "frames": int(frames),
            "duration_s": float(duration_s), "policy": policy}
