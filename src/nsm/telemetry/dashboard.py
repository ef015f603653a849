"""The fleet dashboard `nsm serve` serves: a fleet page and a robot page (static HTML and
JavaScript shipped in the package, nothing to build), the JSON they read and a live stream.

    GET /                    the fleet: robot, last seen, battery, loop period p99, rows/s,
                             episodes today, latest prediction per model, alerts
    GET /robots/{robot_id}   one robot: battery and loop timing over time, predictions, episodes
    GET /v1/fleet            JSON of the fleet page (per-minute rollups + latest predictions)
    GET /v1/robots/{id}      JSON of the robot page
    GET /v1/stream           server-sent events: `fleet` (rows that arrived, per robot, each
                             second) and `update_data` (each new prediction: the very message
                             the Brain Worker sends the hub, as stored in `predictions.payload`)

Reads need a bearer token: a read-only one (`nsm serve token add --read-only`) or the
fleet-wide one reads everything, a robot's token its own robot only. The pages keep the
token in the browser's session storage (given once as `/#token=...`: a fragment never
reaches a server or its logs) and send it as a header, so the stream is read with fetch
rather than EventSource (which cannot send headers).

History comes from `telemetry_minute` (nsm.telemetry.rollups), never from raw rows; the
live part polls only the rows newer than the last poll (by id) while a page is open.
"""
import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.sinks import sql_time
from nsm.telemetry.tokens import Grant

STATIC = Path(__file__).resolve().parent / "static"
HISTORY = timedelta(hours=24)

_FLEET = """
WITH m AS (SELECT robot_id, minute, rows, loop_ms_p99, last_at,
                  row_number() OVER (PARTITION BY robot_id ORDER BY minute DESC) AS k
           FROM telemetry_minute WHERE minute >= :since),
b AS (SELECT robot_id, battery, row_number() OVER (PARTITION BY robot_id ORDER BY minute DESC) AS k
      FROM telemetry_minute WHERE minute >= :since AND battery IS NOT NULL),
e AS (SELECT robot_id, sum(episodes) AS episodes FROM telemetry_minute WHERE minute >= :today GROUP BY robot_id)
SELECT m.robot_id, m.last_at, m.rows, m.loop_ms_p99, b.battery, coalesce(e.episodes, 0) AS episodes
FROM m LEFT JOIN b ON b.robot_id = m.robot_id AND b.k = 1 LEFT JOIN e ON e.robot_id = m.robot_id
WHERE m.k = 1 ORDER BY m.robot_id
"""
_LATEST_PREDICTIONS = """
SELECT robot_id, payload FROM (
  SELECT robot_id, payload, row_number() OVER (PARTITION BY robot_id, model ORDER BY id DESC) AS k
  FROM predictions WHERE created_at >= :since {robot}) p
WHERE k = 1 ORDER BY robot_id
"""


def _when(value) -> str | None:
    """A stored time as ISO 8601 UTC (SQLite hands back naive UTC, or text from raw SQL)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _payload(value) -> dict:
    return json.loads(value) if isinstance(value, str) else value


def fleet(engine: Engine, now: datetime | None = None) -> dict:
    """Every robot heard from in the last 24 h: its last rolled-up minute and latest predictions."""
    now = now or datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    bounds = {"since": sql_time(engine.dialect.name, now - HISTORY), "today": sql_time(engine.dialect.name, today)}
    with engine.connect() as conn:
        minutes = conn.execute(text(_FLEET), bounds).all()
        predictions = conn.execute(text(_LATEST_PREDICTIONS.format(robot="")), bounds).all()
    robots = {r.robot_id: {"robot_id": r.robot_id, "last_seen": _when(r.last_at), "rows_per_s": r.rows / 60.0,
                           "loop_ms_p99": r.loop_ms_p99, "battery": r.battery, "episodes_today": int(r.episodes),
                           "predictions": []} for r in minutes}
    for p in predictions:
        robots.setdefault(p.robot_id, {"robot_id": p.robot_id, "last_seen": None, "rows_per_s": None,
                                       "loop_ms_p99": None, "battery": None, "episodes_today": 0, "predictions": []})
        robots[p.robot_id]["predictions"].append(_payload(p.payload))
    return {"now": now.isoformat(), "robots": sorted(robots.values(), key=lambda r: r["robot_id"])}


def robot(engine: Engine, robot_id: str, now: datetime | None = None, minutes: int = 24 * 60) -> dict:
    """One robot: its minutes (battery, loop timing, rows), recent predictions and episodes."""
    now = now or datetime.now(UTC)
    since = {"since": sql_time(engine.dialect.name, now - timedelta(minutes=minutes)), "r": robot_id}
    with engine.connect() as conn:
        series = conn.execute(text("SELECT minute, rows, battery, loop_ms_p99, loop_ms_max FROM telemetry_minute "
                                   "WHERE robot_id = :r AND minute >= :since ORDER BY minute"), since).all()
        predictions = conn.execute(text("SELECT payload FROM predictions WHERE robot_id = :r AND created_at >= :since "
                                        "ORDER BY id DESC LIMIT 50"), since).scalars().all()
        episodes = conn.execute(text("SELECT created_at, payload FROM robot_telemetry WHERE robot_id = :r AND "
                                     "data_type = 'episode' AND created_at >= :since ORDER BY created_at DESC "
                                     "LIMIT 50"), since).all()
    return {"robot_id": robot_id, "now": now.isoformat(),
            "minutes": [{"minute": _when(m.minute), "rows": m.rows, "battery": m.battery,
                         "loop_ms_p99": m.loop_ms_p99, "loop_ms_max": m.loop_ms_max} for m in series],
            "predictions": [_payload(p) for p in predictions],
            "episodes": [{"ended_at": _when(e.created_at), **_payload(e.payload)} for e in episodes]}


class LiveFeed:
    """While at least one stream is open: every `every` s, the rows that arrived since the last
    poll (by id: robot clocks do not matter) per robot, with the newest battery percent, and the
    new predictions; each open stream gets them as events. Nothing runs while nobody watches."""

    def __init__(self, engine: Engine, every: float = 1.0, max_queued: int = 100):
        self.engine, self.every, self.max_queued = engine, every, max_queued
        self._streams: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self.max_queued)
        with self._lock:
            self._streams[queue] = asyncio.get_running_loop()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
                self._thread.start()
        return queue

    def close(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._streams.pop(queue, None)

    def _run(self) -> None:
        last_row = last_prediction = None
        polled = time.monotonic()
        while True:
            with self._lock:
                if not self._streams:
                    self._thread = None
                    return
            try:
                events, last_row, last_prediction = self._poll(last_row, last_prediction, time.monotonic() - polled)
            except SQLAlchemyError:
                events = [{"type": "status", "database": False}]
            polled = time.monotonic()
            for event in events:
                self._send(event)
            time.sleep(self.every)

    def _poll(self, last_row, last_prediction, elapsed: float):
        with self.engine.connect() as conn:
            if last_row is None:  # the first poll marks where the stream starts
                last_row = conn.execute(text("SELECT coalesce(max(id), 0) FROM robot_telemetry")).scalar()
                last_prediction = conn.execute(text("SELECT coalesce(max(id), 0) FROM predictions")).scalar()
                return [], last_row, last_prediction
            counts = conn.execute(text("SELECT robot_id, count(*) AS n, max(created_at) AS last_at, max(id) AS top "
                                       "FROM robot_telemetry WHERE id > :i GROUP BY robot_id"), {"i": last_row}).all()
            batteries = conn.execute(text("SELECT robot_id, payload FROM robot_telemetry WHERE id > :i AND "
                                          "data_type = 'battery' ORDER BY id"), {"i": last_row}).all()
            predictions = conn.execute(text("SELECT id, payload FROM predictions WHERE id > :i ORDER BY id LIMIT 500"),
                                       {"i": last_prediction}).all()
        battery = {b.robot_id: _payload(b.payload).get("value") for b in batteries}
        events = []
        if counts:
            events.append({"type": "fleet", "robots": [
                {"robot_id": c.robot_id, "rows_per_s": c.n / max(elapsed, 1e-3), "last_seen": _when(c.last_at),
                 **({"battery": battery[c.robot_id]} if c.robot_id in battery else {})} for c in counts]})
            last_row = max(last_row, max(c.top for c in counts))
        for p in predictions:
            events.append({"type": "update_data", "data": _payload(p.payload)})
            last_prediction = p.id
        return events, last_row, last_prediction

    def _send(self, event: dict) -> None:
        with self._lock:
            streams = list(self._streams.items())
        for queue, loop in streams:
            loop.call_soon_threadsafe(_offer, queue, event)


def _offer(queue: asyncio.Queue, event: dict) -> None:
    """A stream that does not keep up loses its oldest events, never the server's memory."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)


def router(engine: Engine, authorized) -> APIRouter:
    """The dashboard's pages, JSON and stream; `authorized` is the app's bearer-token dependency."""
    feed = LiveFeed(engine)
    routes = APIRouter()

    def readable(grant: Grant, robot_id: str | None) -> None:
        if not grant.may_read(robot_id):
            raise HTTPException(403, f"token '{grant.name}' may not read "
                                     + (f"robot {robot_id}" if robot_id else "the fleet (a read-only token does)"))

    @routes.get("/", include_in_schema=False)
    def fleet_page() -> FileResponse:
        return FileResponse(STATIC / "fleet.html")

    @routes.get("/robots/{robot_id}", include_in_schema=False)
    def robot_page(robot_id: str) -> FileResponse:
        return FileResponse(STATIC / "robot.html")

    @routes.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        path = STATIC / name
        if path.parent != STATIC or not path.is_file():
            raise HTTPException(404, f"no asset {name}")
        return FileResponse(path)

    @routes.get("/v1/fleet")
    def fleet_json(grant: Grant = Depends(authorized)) -> dict:
        readable(grant, None)
        return fleet(engine)

    @routes.get("/v1/robots/{robot_id}")
    def robot_json(robot_id: str, grant: Grant = Depends(authorized)) -> dict:
        readable(grant, robot_id)
        return robot(engine, robot_id)

    @routes.get("/v1/stream")
    async def stream(grant: Grant = Depends(authorized), robot_id: str | None = None) -> StreamingResponse:
        readable(grant, robot_id)

        async def events():
            queue = feed.open()
            try:
                yield ": connected\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"  # proxies close silent connections
                        continue
                    event = _only(event, robot_id)
                    if event is not None:
                        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            finally:
                feed.close(queue)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return routes


def _only(event: dict, robot_id: str | None) -> dict | None:
    """`event` as a stream for `robot_id` sees it (None: the whole fleet)."""
    if robot_id is None:
        return event
    if event["type"] == "fleet":
        robots = [r for r in event["robots"] if r["robot_id"] == robot_id]
        return {**event, "robots": robots} if robots else None
    if event["type"] == "update_data":
        return event if event["data"].get("robot_id") == robot_id else None
    return event
