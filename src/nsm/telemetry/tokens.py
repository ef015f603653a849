"""Per-robot access to `nsm serve`: a token per robot, which writes that robot's rows only,
and read-only tokens for dashboards and exports (`nsm serve token add|revoke|list`).

The server stores a token's SHA-256, never the token: it is shown once, when created. A
token is 32 random bytes, so a fast hash is enough (nothing to guess from a dictionary, as
with passwords) and checking a request costs microseconds. The check is cached for a few
seconds per token, so a revoked token stops working within `ttl`.
"""
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from nsm.errors import NsmError
from nsm.telemetry.models import ApiToken

ROBOT, READ = "robot", "read"
UNCACHED = object()  # TokenCheck.cached(): the table must be asked
PREFIX = "nsm_"  # recognisable in a leaked config (secret scanners), never part of the hash's secrecy


@dataclass(frozen=True)
class Grant:
    """What a request's token allows: `robot_id` None with role robot = any robot (the fleet-wide `--token`)."""

    name: str
    role: str
    robot_id: str | None

    def may_write(self, robot_id: str) -> bool:
        return self.role == ROBOT and self.robot_id in (None, robot_id)

    def may_read(self, robot_id: str | None) -> bool:
        """Read-only and fleet-wide tokens read everything; a robot's token its own robot (None: the fleet)."""
        return self.robot_id is None or self.robot_id == robot_id


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(engine: Engine, robot_id: str | None = None, name: str | None = None) -> tuple[int, str]:
    """A new token: for `robot_id` (writes its rows only) or, without one, read-only. Returns its
    id and the token, which is not kept anywhere."""
    token = PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        token_id = conn.execute(ApiToken.__table__.insert().values(
            name=name or robot_id or "read-only", role=ROBOT if robot_id else READ, robot_id=robot_id,
            token_sha256=digest(token), created_at=datetime.now(UTC)).returning(ApiToken.id)).scalar_one()
    return token_id, token


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                            .values(revoked_at=datetime.now(UTC))).rowcount
    if not done:
        raise NsmError(f"no active token with id {token_id}; `nsm serve token list` shows them")


def list_tokens(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.robot_id, ApiToken.created_at,
                                   ApiToken.revoked_at).order_by(ApiToken.id)).all()


def active_tokens(engine: Engine) -> int:
    return sum(1 for t in list_tokens(engine) if t.revoked_at is None)


class TokenCheck:
    """`Authorization` header -> Grant (None: no such active token), cached `ttl` seconds a token
    (`cached`, then `look_up` when that says UNCACHED).
    `fleet_token`: one token for every robot (the single-token setup), checked without the table."""

    def __init__(self, engine: Engine, fleet_token: str = "", ttl: float = 5.0):
        self.engine, self.ttl = engine, ttl
        self._fleet = digest(fleet_token) if fleet_token else None
        self._cache: dict[str, tuple[float, Grant | None]] = {}
        self._lock = threading.Lock()

    def cached(self, header: str):
        """The Grant (or None) when no database query is needed — a malformed header, the fleet
        token, a token checked less than `ttl` ago — else UNCACHED: the server answers most
        requests on its event loop and queries the table on a thread only for these."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        key = digest(token)
        if self._fleet is not None and secrets.compare_digest(key, self._fleet):
            return Grant("fleet token", ROBOT, None)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        return UNCACHED

    def look_up(self, header: str) -> Grant | None:
        """The Grant of a bearer header's token from the table (None: no such active token), cached."""
        key = digest(header.partition(" ")[2])
        with self.engine.connect() as conn:
            row = conn.execute(select(ApiToken.name, ApiToken.role, ApiToken.robot_id)
                               .where(ApiToken.token_sha256 == key, ApiToken.revoked_at.is_(None))).first()
        found = Grant(row.name, row.role, row.robot_id) if row is not None else None
        with self._lock:
            if len(self._cache) > 100_000:  # wrong tokens must not grow it without bound
                self._cache.clear()
            self._cache[key] = (time.monotonic(), found)
        return found
