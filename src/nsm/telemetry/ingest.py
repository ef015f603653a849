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
import logging
import os
import re
import sys
import threading
import time
from datetime import datetime
from typing import Annotated

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
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
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z"  # \Z: Python's $ would let a final newline in
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # JSON writes U+0000 as \u0000 (an unescaped backslash)
MISSING = re.compile(r"Object missing required field `(.+)`")
STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")  # a step of msgspec's error path: .key or [index]


class ValuePayload(msgspec.Struct):
    value: float


class BatteryPayload(msgspec.Struct):
    value: float | None  # percent; null: unknown (a real pack without a configured curve)
    voltage: float | None = None
    current: float | None = None


class JointStatesPayload(msgspec.Struct):
    position: list[float]
    velocity: list[float | None] = []  # null: not measured
    effort: list[float | None] = []


class EpisodePayload(msgspec.Struct):
    success: bool | None  # None: not judged (a real arm without a success check)
    frames: int
    duration_s: float


# The data types the AI team trains from and the dashboard reads have a schema (other keys are allowed); other types
# need a JSON object.
SCHEMAS: dict[str, type] = {"battery": BatteryPayload, "loop_timing": ValuePayload,
                            "joint_states": JointStatesPayload, "joint_commands": JointStatesPayload,
                            "episode": EpisodePayload}
_CHECKS = {data_type: msgspec.json.Decoder(schema) for data_type, schema in SCHEMAS.items()}
Name = Annotated[str, msgspec.Meta(pattern=NAME)]


class Row(msgspec.Struct, forbid_unknown_fields=True):
    data_type: str  # a Name: parse_batch checks the types without a schema (msgspec's pattern ran a regex per row)
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # BIGINT
    payload: msgspec.Raw  # the JSON text as sent: stored as it is, checked against its data type's schema
    created_at: Annotated[datetime, msgspec.Meta(tz=True)]


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    robot_id: Name
    rows: Annotated[list[Row], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]


_BATCH = msgspec.json.Decoder(Batch)


class BatchError(ValueError):
    """The batch does not hold valid rows: `errors` as FastAPI's 422 detail ({type, loc, msg})."""

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} invalid row(s): {errors[0]['msg']}")
        self.errors = errors


def parse_batch(raw: bytes | str) -> tuple[str, list[tuple]]:
    """The batch's robot_id and its rows as the sinks write them `(robot_id, data_type, seq,
    payload JSON, created_at)`, or BatchError. msgspec decodes and checks the batch in C and
    hands each payload back as the JSON text that was sent (msgspec.Raw), so a payload is
    parsed once more only for its schema, never re-encoded. Measured on 5,000 joint_states
    rows beside a training run: 3.6 us a row, against 17.2 us for the pydantic-core parse,
    per-type check and re-encode it replaces (bench/telemetry.py has the service's rows/s).
    Checking a row's data_type against NAME only where SCHEMAS has no schema for it (msgspec's
    pattern ran a regex on every row) took the robot's mix from 2.2 to 1.7 us a row (5,000
    rows, old and new alternated in one process); what is left is mostly msgspec parsing the
    payloads' numbers for their schema (orjson.loads of the same payloads costs as much)."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw  # invalid UTF-8 anywhere, payloads included
        batch = _BATCH.decode(text)
    except UnicodeDecodeError:
        raise BatchError([{"type": "json_invalid", "loc": (), "msg": "body is not UTF-8"}]) from None
    except msgspec.ValidationError as exc:
        raise BatchError([_error(exc)]) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BatchError([{"type": "json_invalid", "loc": (), "msg": f"not JSON: {exc}"}]) from None
    robot_id, out, errors = batch.robot_id, [], []
    nul = "\\u0000" in text  # one screen for the batch; row by row only when it hits
    for i, row in enumerate(batch.rows):
        payload = bytes(row.payload).decode()
        check = _CHECKS.get(row.data_type)
        if check is None:
            try:
                msgspec.convert(row.data_type, Name)  # SCHEMAS' types are names: only the others are checked
            except msgspec.ValidationError as exc:
                errors.append(_error(exc, ("rows", i, "data_type")))
                continue
        try:
            if check is not None:
                check.decode(payload)
            elif payload[:1] != "{":
                raise msgspec.ValidationError("Expected `object`")
        except msgspec.ValidationError as exc:
            errors.append(_error(exc, ("rows", i, "payload")))
            continue
        if nul and NUL_ESCAPE.search(payload):
            errors.append({"type": "value_error", "loc": ("rows", i, "payload"),
                           "msg": "payload has a U+0000 character, which PostgreSQL's JSON cannot hold"})
        out.append((robot_id, row.data_type, row.seq, payload, row.created_at))
    if errors:
        raise BatchError(errors)
    return robot_id, out


def _error(exc: msgspec.ValidationError, within: tuple = ()) -> dict:
    """msgspec's message (`Expected `int` >= 0 - at `$.rows[0].seq``) as one 422 detail entry."""
    msg, _, path = str(exc).partition(" - at `$")
    steps = tuple(int(index) if index else key for key, index in STEP.findall(path.rstrip("`")))
    if missing := MISSING.fullmatch(msg):  # the field is named in the message, not the path
        steps += (missing[1],)
    return {"type": "missing" if missing else "value_error", "loc": within + steps, "msg": msg}


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
