"""A small Socket.IO hub for development, tests and benchmarks (`nsm ai hub`): what the
operators' hub does with the Brain Worker's messages, on localhost.

Workers connect (the token in the Socket.IO auth payload is checked when one is set) and
emit `worker_to_hub` with `{"type": "update_data", "data": {...}}`; the hub keeps each
message with its arrival time and forwards `data` to every other client as the
`update_data` event — what a dashboard listens to. `delay_s` makes it a slow hub.
"""
import asyncio
import threading
import time
from collections.abc import Callable

from nsm.ai.hub import EVENT


class DevHub:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, namespace: str = "/", token: str | None = None,
                 delay_s: float = 0.0, on_update: Callable[[float, dict], None] | None = None):
        import socketio

        self.host, self.port, self.namespace, self.token, self.delay_s = host, port, namespace, token, delay_s
        self.received: list[tuple[float, dict]] = []  # (arrival Unix time, message)
        self.refused = 0
        self.on_update = on_update
        # a slow hub handles one message after the other, so its delay backs up the connection
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False,
                                        async_handlers=not delay_s)
        self.sio.on("connect", self._connect, namespace=namespace)
        self.sio.on(EVENT, self._message, namespace=namespace)
        self.app = socketio.ASGIApp(self.sio)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _connect(self, sid, environ, auth):
        from socketio.exceptions import ConnectionRefusedError

        if self.token and (not isinstance(auth, dict) or auth.get("token") != self.token):
            self.refused += 1
            raise ConnectionRefusedError("invalid token")

    async def _message(self, sid, message):
        arrived = time.time()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.received.append((arrived, message))
        if self.on_update is not None:
            self.on_update(arrived, message)
        if isinstance(message, dict) and message.get("type") == "update_data":
            await self.sio.emit("update_data", message.get("data"), namespace=self.namespace, skip_sid=sid)

    def start(self) -> "DevHub":
        """Serve on a thread; returns once the port is open (port 0: a free one, see `url`)."""
        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="nsm-dev-hub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the hub could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def updates(self) -> list[dict]:
        """The `data` of every update_data message received, in order."""
        return [m["data"] for _, m in list(self.received) if isinstance(m, dict) and m.get("type") == "update_data"]
