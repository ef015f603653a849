"""`nsm serve` fuzzed with hypothesis, as a real process on localhost writing to the real
PostgreSQL: wrong types, huge and nested payloads, unicode, other robots' ids, replays, read-only
and wrong tokens. Only 4xx answers, never 5xx; every acknowledged row stored, nothing else."""
import json
import string
from datetime import timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from conftest import fresh_database
from nsm.telemetry.db import connect
from nsm.telemetry.tokens import add_token
from test_ingest import Service, post

pytestmark = pytest.mark.postgres

ROBOTS = ["EP01", "EP02"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(timezones=offsets).map(lambda d: d.isoformat())
# well-formed batches whose contents are fuzzed: the boundary between stored and refused
payloads = (st.fixed_dictionaries({"value": st.floats() | st.integers() | st.none()})
            | st.fixed_dictionaries({"position": st.lists(st.floats(), max_size=7)})
            | st.dictionaries(st.text(max_size=8), json_values, max_size=4))
rows = st.fixed_dictionaries(
    {"data_type": st.sampled_from(["battery", "joint_states", "loop_timing", "note", "x.y:z-1"]),
     "seq": st.integers(0, 30) | st.integers(0, 2**70),  # small seqs: replays and conflicts with earlier batches
     "payload": payloads, "created_at": times})
batches = st.fixed_dictionaries({"robot_id": st.sampled_from(ROBOTS), "rows": st.lists(rows, min_size=1, max_size=5)})
# anything at all where the batch's parts go
garbage = st.fixed_dictionaries(
    {"robot_id": st.sampled_from(ROBOTS) | st.text(string.printable, max_size=70),
     "rows": st.lists(st.fixed_dictionaries({"data_type": json_values, "seq": json_values, "payload": json_values,
                                             "created_at": json_values | times}), max_size=3) | json_values})


@pytest.fixture(scope="module")
def fleet(pg_dsn):
    with fresh_database(pg_dsn) as db:
        engine = connect(db)
        tokens = {robot: add_token(engine, robot)[1] for robot in ROBOTS} | {"read": add_token(engine)[1],
                                                                             "wrong": "nsm_x"}
        svc = Service(db, "")
        acked: set = set()
        yield svc, db, tokens, acked
        svc.kill()


def check(fleet, token_name, body=None, raw=None):
    svc, _, tokens, acked = fleet
    answer = post(svc.url, body, token=tokens[token_name], raw=raw)
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code == 200:
        body = body if body is not None else json.loads(raw)
        assert token_name == body["robot_id"] and answer.json()["stored"] is True
        acked.update((body["robot_id"], r["data_type"], r["seq"]) for r in body["rows"])
    return answer


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=batches, token=st.sampled_from(ROBOTS + ROBOTS + ["read", "wrong"]))
def test_fuzzed_batches_get_4xx_or_are_stored(fleet, batch, token):
    check(fleet, token, batch)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=garbage, token=st.sampled_from(ROBOTS))
def test_garbage_batches_get_4xx(fleet, batch, token):
    check(fleet, token, batch)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode), token=st.sampled_from(ROBOTS))
def test_fuzzed_bodies_get_4xx(fleet, raw, token):
    check(fleet, token, raw=raw)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(depth=st.integers(1, 5000))
def test_deeply_nested_payloads_get_4xx_or_are_stored(fleet, depth):
    nested = "[" * depth + "]" * depth
    raw = (f'{{"robot_id": "EP01", "rows": [{{"data_type": "note", "seq": {depth}, "payload": {{"x": {nested}}}, '
           '"created_at": "2026-12-01T00:00:00+00:00"}]}')
    check(fleet, "EP01", raw=raw.encode())


def test_the_database_holds_exactly_the_acknowledged_rows(fleet):
    """Runs after the fuzzing above (pytest keeps the file's order)."""
    _, db, _, acked = fleet
    with connect(db, migrate=False).connect() as conn:
        stored = {tuple(r) for r in conn.execute(text("SELECT robot_id, data_type, seq FROM robot_telemetry")).all()}
    assert acked and stored == acked
