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
never duplicates a row. GET /healthz for load balancers.
"""
import asyncio
import json
import logging
import re
import threading
import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.coalesce import Busy, CoalescingWriter, Refused, Unavailable
from nsm.telemetry.partitions import ensure_days
from nsm.telemetry.sinks import INGEST_PATH, DatabaseSink
from nsm.telemetry.tokens import Grant, TokenCheck

log = logging.getLogger("nsm.serve")
MAX_BODY_BYTES = 4 * 2**20
MAX_ROWS = 10_000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # json.dumps writes U+0000 as \u0000 (an unescaped backslash)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class ValuePayload(_Payload):
    value: float


class BatteryPayload(_Payload):
    value: float | None  # percent; null: unknown (a real pack without a configured curve)
    voltage: float | None = None
    current: float | None = None


class JointStatesPayload(_Payload):
    position: list[float]
    velocity: list[float | None] = []  # null: not measured
    effort: list[float | None] = []


# The data types the AI team trains from have a schema; other types need a JSON object.
SCHEMAS: dict[str, type[_Payload]] = {"battery": BatteryPayload, "loop_timing": ValuePayload,
                                      "joint_states": JointStatesPayload, "joint_commands": JointStatesPayload}


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_type: Annotated[str, Field(pattern=NAME)]
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]  # BIGINT
    payload: dict
    created_at: AwareDatetime
    _json: str = PrivateAttr("")

    @model_validator(mode="after")
    def _schema(self):
        schema = SCHEMAS.get(self.data_type)
        if schema is not None:
            schema.model_validate(self.payload)
        # what PostgreSQL's jsonb cannot hold is refused here (found by fuzzing): accepted, it would fail
        # the batch's COPY on every retry
        try:
            self._json = json.dumps(self.payload, allow_nan=False)
        except ValueError:
            raise ValueError("payload has NaN or Infinity, which JSON cannot hold; send null for unknown") from None
        if NUL_ESCAPE.search(self._json):
            raise ValueError("payload has a U+0000 character, which PostgreSQL's JSON cannot hold")
        return self

    @property
    def payload_json(self) -> str:
        return self._json


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    robot_id: Annotated[str, Field(pattern=NAME)]
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


def create_app(db_url: str, fleet_token: str, token_ttl: float = 5.0, max_pending: int = 200_000) -> FastAPI:
    """`fleet_token`: one token any robot may use ("" = only the per-robot tokens of `nsm serve
    token add`); a revoked token stops working within `token_ttl` seconds; past `max_pending`
    rows waiting to be written, batches get 429."""
    sink = DatabaseSink(db_url, None)
    writer = CoalescingWriter(sink, max_pending)
    tokens = TokenCheck(sink.engine, fleet_token, token_ttl)
    threading.Thread(target=_keep_days, args=(sink.engine,), name="partitions", daemon=True).start()
    app = FastAPI(title="nsm telemetry ingest", version="1")

    def authorized(request: Request) -> Grant:
        grant = tokens.grant(request.headers.get("authorization", ""))
        if grant is None:
            raise HTTPException(401, "missing, wrong or revoked bearer token", headers={"WWW-Authenticate": "Bearer"})
        return grant

    async def body(request: Request) -> Batch:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes; send smaller batches")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes; send smaller batches")
        try:
            return Batch.model_validate_json(raw)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False, include_input=False)) from None

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "database": writer.ok, "pending_rows": writer.pending, "writes": writer.writes,
                "batches": writer.batches}

    @app.post(INGEST_PATH)
    async def ingest(grant: Annotated[Grant, Depends(authorized)], batch: Annotated[Batch, Depends(body)]) -> dict:
        if not grant.may_write(batch.robot_id):
            raise HTTPException(403, f"token '{grant.name}' may not write robot_id {batch.robot_id}"
                                     + (" (read-only)" if grant.robot_id is None else f"; it writes {grant.robot_id}"))
        rows = [(batch.robot_id, r.data_type, r.seq, r.payload_json, r.created_at) for r in batch.rows]
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


def _keep_days(engine, every: float = 3600.0) -> None:
    """The coming days' partitions of robot_telemetry (PostgreSQL), now and hourly; a database
    that is down is tried again at the next round (rows meanwhile land in the default partition)."""
    while True:
        try:
            ensure_days(engine)
        except SQLAlchemyError as exc:
            log.warning("partitions: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        time.sleep(every)
