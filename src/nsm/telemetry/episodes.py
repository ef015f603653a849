"""The `episodes` table: one row per recorded episode (where its files are, how it went)."""
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from nsm.telemetry.models import Episode


def record_episode(engine: Engine, robot_id: str, path: Path, started_at: datetime, duration_s: float, frames: int,
                   success: bool | None, policy: str, **meta) -> int:
    """Insert the episode's row; returns its id. Called between episodes, never in the loop."""
    with Session(engine) as session:
        row = Episode(robot_id=robot_id, path=str(path.resolve()), started_at=started_at, duration_s=duration_s,
                      frames=frames, success=success, policy=policy, meta={k: str(v) for k, v in meta.items()})
        session.add(row)
        session.commit()
        return row.id
