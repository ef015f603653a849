"""`nsm serve`: the HTTP ingest service for robots that log to a remote server.

    POST /v1/telemetry   Authorization: Bearer <token>
    {"robot_id": "EP01", "rows": [{"data_type": "battery", "seq": 17,
      "payload": {"value": 87.5}, "created_at": "2026-11-25T13:00:00+00:00"}]}

-> 200 {"accepted": n, "stored": true} (false: the database was down and the rows were
spooled on the server, to be written when it returns). Errors: 401 bad or missing token
(nothing written), 413 body over the size limit, 422 a row that does not match its
data_type's schema (the whole batch is refused). Rows go through the same DatabaseSink as
a robot's own writer (COPY, ON CONFLICT DO NOTHING on (robot_id, data_type, seq)), so a
robot retrying a batch never duplicates a row. GET /healthz for load balancers.
"""
import hmac
import json
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from nsm.telemetry.sinks import INGEST_PATH, DatabaseSink

MAX_BODY_BYTES = 4 * 2**20
MAX_ROWS = 10_000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


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
    seq: Annotated[int, Field(ge=0)]
    payload: dict
    created_at: AwareDatetime

    @model_validator(mode="after")
    def _schema(self):
        schema = SCHEMAS.get(self.data_type)
        if schema is not None:
            schema.model_validate(self.payload)
        return self


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    robot_id: Annotated[str, Field(pattern=NAME)]
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


def create_app(db_url: str, token: str, spool_dir: Path) -> FastAPI:
    if not token:
        raise ValueError("the ingest service needs a token (--token or NSM_INGEST_TOKEN)")
    sink = DatabaseSink(db_url, spool_dir)
    lock = threading.Lock()  # one writer: sync endpoints run on a thread pool
    app = FastAPI(title="nsm telemetry ingest", version="1")

    def authorized(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

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
        return {"ok": True, "database": sink.ok}

    @app.post(INGEST_PATH, dependencies=[Depends(authorized)])
    def ingest(batch: Annotated[Batch, Depends(body)]) -> dict:
        rows = [(batch.robot_id, r.data_type, r.seq, json.dumps(r.payload), r.created_at) for r in batch.rows]
        with lock:
            stored = sink.flush(rows)
        return {"accepted": len(rows), "stored": stored}

    return app
