"""`nsm serve`: the HTTP ingest service for robots that log to a remote server.

    POST /v1/telemetry   Authorization: Bearer <token>
    {"robot_id": "EP01", "rows": [{"data_type": "battery", "seq": 17,
      "payload": {"value": 87.5}, "created_at": "2026-11-25T13:00:00+00:00"}]}

-> 200 {"accepted": n, "stored": true} once the rows are committed: many robots' batches
are written together (nsm.telemetry.coalesce: one COPY, one commit), and a robot deletes
from its spool only what it has this answer for. Errors: 401 bad, missing or revoked token
(nothing written), 403 a token that may not write this robot_id (another robot's, or a
read-only one; nsm.telemetry.tokens), 413 body over the size limit, 422 a row that does not
match its data_type's schema (the whole batch is refused), 429 more rows waiting than the
server takes and 503 the database did not take them (both with Retry-After: the robot
keeps the rows and sends them again). Rows go through the same DatabaseSink as a robot's
own writer (COPY, ON CONFLICT DO NOTHING on its unique key), so a robot retrying a batch
never duplicates a row. GET /healthz for load balancers. The fleet dashboard (pages, JSON,
live stream) is nsm.telemetry.dashboard's; the per-minute rollups it reads are made here
once a minute (nsm.telemetry.rollups), the coming days' partitions hourly.
"""
import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Annotated, NotRequired, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import to_json
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry import dashboard
from nsm.telemetry.coalesce import Busy, CoalescingWriter, Refused, Unavailable
from nsm.telemetry.db import upgrade
from nsm.telemetry.partitions import ensure_days
from nsm.telemetry.rollups import keep_rolled_up
from nsm.telemetry.sinks import INGEST_PATH, DatabaseSink
from nsm.telemetry.tokens import UNCACHED, Grant, TokenCheck

log = logging.getLogger("nsm.serve")
MAX_BODY_BYTES = 4 * 2**20
MAX_ROWS = 10_000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # json.dumps writes U+0000 as \u0000 (an unescaped backslash)


class ValuePayload(TypedDict):
    value: float


class BatteryPayload(TypedDict):
    value: float | None  # percent; null: unknown (a real pack without a configured curve)
    voltage: NotRequired[float | None]
    current: NotRequired[float | None]


class JointStatesPayload(TypedDict):
    position: list[float]
    velocity: NotRequired[list[float | None]]  # null: not measured
    effort: NotRequired[list[float | None]]


class EpisodePayload(TypedDict):
    success: bool | None  # None: not judged (a real arm without a success check)
    frames: int
    duration_s: float


# The data types the AI team trains from and the dashboard reads have a schema (other keys are allowed); other types
# need a JSON object. Checked a whole batch's rows of one type in one call of pydantic-core.
SCHEMAS: dict[str, type] = {"battery": BatteryPayload, "loop_timing": ValuePayload,
                            "joint_states": JointStatesPayload, "joint_commands": JointStatesPayload,
                            "episode": EpisodePayload}
_CHECKS = {data_type: TypeAdapter(list[schema]) for data_type, schema in SCHEMAS.items()}


@with_config(ConfigDict(extra="forbid"))
class Row(TypedDict):
    data_type: Annotated[str, Field(pattern=NAME)]
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]  # BIGINT
    payload: dict
    created_at: AwareDatetime


@with_config(ConfigDict(extra="forbid"))
class Batch(TypedDict):
    robot_id: Annotated[str, Field(pattern=NAME)]
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


# TypedDicts rather than models: pydantic-core hands back plain dicts, no object per row (5,000 rows: 20 ms, not 25)
_BATCH = TypeAdapter(Batch)


class BatchError(ValueError):
    """The batch does not hold valid rows: `errors` in pydantic's shape (a 422's detail)."""

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} invalid row(s): {errors[0]['msg']}")
        self.errors = errors


def parse_batch(raw: bytes | str) -> tuple[str, list[tuple]]:
    """The batch's robot_id and its rows as the sinks write them `(robot_id, data_type, seq,
    payload JSON, created_at)`, or BatchError. Per row only the JSON parse and one encode run
    (in pydantic-core): the schema check takes all rows of a data type at once. Measured on
    5,000 joint_states rows: 39 ms (48 ms with pydantic models and a screen per row; a per-row Python
    validator took 126 ms on a faster hour of the same VM)."""
    try:
        batch = _BATCH.validate_json(raw)
    except ValidationError as exc:
        raise BatchError(_errors(exc)) from None
    robot_id, given = batch["robot_id"], batch["rows"]
    by_type: dict[str, list[int]] = {}
    for i, row in enumerate(given):
        by_type.setdefault(row["data_type"], []).append(i)
    errors = []
    for data_type, index in by_type.items():
        if data_type in _CHECKS:
            try:
                _CHECKS[data_type].validate_python([given[i]["payload"] for i in index])
            except ValidationError as exc:
                errors += [e | {"loc": ("rows", index[e["loc"][0]], "payload", *e["loc"][1:])} for e in _errors(exc)]
    texts = [to_json(row["payload"]) for row in given]
    every = b"".join(texts)  # one screen for the batch; row by row only when it hits
    if b"NaN" in every or b"Infinity" in every or b"\\u0000" in every:
        errors += [{"type": "value_error", "loc": ("rows", i, "payload"), "msg": problem}
                   for i, text in enumerate(texts)
                   if (b"NaN" in text or b"Infinity" in text or b"\\u0000" in text)
                   and (problem := _unstorable(given[i]["payload"]))]
    if errors:
        raise BatchError(errors)
    return robot_id, [(robot_id, row["data_type"], row["seq"], text.decode(), row["created_at"])
                      for row, text in zip(given, texts, strict=True)]


def _unstorable(payload: dict) -> str:
    """What PostgreSQL's jsonb cannot hold (found by fuzzing: accepted, it failed the batch's
    COPY on every retry); "" when the fast screen's hit was inside a string."""
    try:
        text = json.dumps(payload, allow_nan=False)
    except ValueError:
        return "payload has NaN or Infinity, which JSON cannot hold; send null for unknown"
    if NUL_ESCAPE.search(text):
        return "payload has a U+0000 character, which PostgreSQL's JSON cannot hold"
    return ""


def _errors(exc: ValidationError) -> list[dict]:
    return exc.errors(include_url=False, include_context=False, include_input=False)


def create_app(db_url: str, fleet_token: str, token_ttl: float = 5.0, max_pending: int = 200_000) -> FastAPI:
    """`fleet_token`: one token any robot may use ("" = only the per-robot tokens of `nsm serve
    token add`); a revoked token stops working within `token_ttl` seconds; past `max_pending`
    rows waiting to be written, batches get 429."""
    # The request handlers and the database writer share the GIL: at the default 5 ms switch
    # interval each of the writer's round trips waited up to 5 ms for it (bench/fleet.py,
    # 200 robots: ack p50 98 -> 39 ms with 0.5 ms).
    sys.setswitchinterval(0.0005)
    sink = DatabaseSink(db_url, None)
    writer = CoalescingWriter(sink, max_pending)
    tokens = TokenCheck(sink.engine, fleet_token, token_ttl)
    threading.Thread(target=_keep_days, args=(sink.engine,), name="schema-and-partitions", daemon=True).start()
    threading.Thread(target=keep_rolled_up, args=(sink.engine,), name="rollups", daemon=True).start()
    app = FastAPI(title="nsm telemetry ingest", version="1")

    async def authorized(request: Request) -> Grant:
        header = request.headers.get("authorization", "")
        grant = tokens.cached(header)
        if grant is UNCACHED:
            grant = await run_in_threadpool(tokens.look_up, header)
        if grant is None:
            raise HTTPException(401, "missing, wrong or revoked bearer token", headers={"WWW-Authenticate": "Bearer"})
        return grant

    async def body(request: Request) -> tuple[str, list[tuple]]:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes; send smaller batches")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes; send smaller batches")
        try:
            return parse_batch(raw)
        except BatchError as exc:
            raise HTTPException(422, exc.errors) from None

    app.include_router(dashboard.router(sink.engine, authorized))

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "database": writer.ok, "pending_rows": writer.pending, "writes": writer.writes,
                "batches": writer.batches}

    @app.post(INGEST_PATH)
    async def ingest(grant: Annotated[Grant, Depends(authorized)],
                     batch: Annotated[tuple[str, list[tuple]], Depends(body)]) -> dict:
        robot_id, rows = batch
        if not grant.may_write(robot_id):
            raise HTTPException(403, f"token '{grant.name}' may not write robot_id {robot_id}"
                                     + (" (read-only)" if grant.robot_id is None else f"; it writes {grant.robot_id}"))
        try:
            await asyncio.wrap_future(writer.submit(rows))
        except Busy as exc:
            raise HTTPException(429, f"server busy: {exc}; send again later", headers={"Retry-After": "1"}) from None
        except Unavailable as exc:
            raise HTTPException(503, f"database unavailable: {exc}; nothing stored, send again later",
                                headers={"Retry-After": "2"}) from None
        except Refused as exc:
            raise HTTPException(422, f"the database refused the rows: {exc}") from None
        return {"accepted": len(rows), "stored": True}

    return app


def app_from_env() -> FastAPI:
    """The app of one worker of `nsm serve --workers N` (uvicorn starts each from this factory)."""
    return create_app(os.environ["NSM_DB_URL"], os.environ.get("NSM_INGEST_TOKEN", ""),
                      max_pending=int(os.environ.get("NSM_MAX_PENDING", "200000")))


def _keep_days(engine, every: float = 3600.0, retry: float = 10.0) -> None:
    """The schema at head and the coming days' partitions of robot_telemetry (PostgreSQL), now
    and hourly; while the database is down, every `retry` s (rows meanwhile wait on the robots,
    or land in the default partition)."""
    while True:
        try:
            upgrade(engine)  # a no-op at head; a server started while the database was down migrates it here
            ensure_days(engine)
        except SQLAlchemyError as exc:
            log.warning("schema and partitions: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
            time.sleep(retry)
            continue
        time.sleep(every)
