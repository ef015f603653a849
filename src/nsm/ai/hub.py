"""The Socket.IO link to the operators' hub: `send()` never blocks the worker.

Messages wait in a bounded deque; when it is full the oldest is dropped (and counted): a
dashboard wants the newest risk, not a backlog. A thread of its own connects (token in the
Socket.IO `auth` payload), emits `worker_to_hub` events, and reconnects with back-off when
the hub goes away. A slow hub cannot grow memory either: while more than `max_in_flight`
packets wait in the Socket.IO client's own send queue, nothing more is handed to it.
"""
import collections
import logging
import threading
import time

EVENT = "worker_to_hub"


class HubClient:
    def __init__(self, url: str, namespace: str = "/", token: str | None = None, max_pending: int = 1000,
                 max_in_flight: int = 100, event: str = EVENT):
        import socketio

        self.url, self.namespace, self.token, self.event = url, namespace, token, event
        self.max_in_flight = max_in_flight
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self.last_error = ""
        self._pending: collections.deque = collections.deque(maxlen=max_pending)
        self._wake = threading.Condition()
        self._stop = False
        self._sio = socketio.Client(reconnection=False, logger=False, engineio_logger=False)
        logging.getLogger("socketio.client").setLevel(logging.CRITICAL)  # failures are counted, not logged per try
        self._thread = threading.Thread(target=self._run, name="nsm-hub", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._sio.connected

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, message: dict) -> None:
        """Queue one message for the hub; returns at once."""
        with self._wake:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(message)
            self._wake.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is pending for up to `timeout` s, then disconnect."""
        deadline = time.monotonic() + timeout
        while self._pending and self.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=timeout + 2)
        if self._sio.connected:
            self._sio.disconnect()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop:
            if not self._sio.connected:
                try:
                    self._sio.connect(self.url, namespaces=[self.namespace], transports=["websocket"],
                                      auth={"token": self.token} if self.token else None, wait_timeout=5)
                    self.connects += 1
                    backoff = 0.2
                except Exception as exc:  # noqa: BLE001 - hub down, refused, bad token: retry later
                    self.last_error = str(exc) or type(exc).__name__
                    self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
            with self._wake:
                while not self._pending and not self._stop and self._sio.connected:
                    self._wake.wait(timeout=0.5)
                if self._stop or not self._pending:
                    continue
                if self._sio.eio.queue.qsize() > self.max_in_flight:
                    self._wake.wait(timeout=0.005)  # the hub reads slowly: let the socket drain
                    continue
                message = self._pending.popleft()
            try:
                self._sio.emit(self.event, message, namespace=self.namespace)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - disconnected meanwhile: keep it for the next connection
                self.last_error = str(exc) or type(exc).__name__
                with self._wake:
                    if len(self._pending) < self._pending.maxlen:
                        self._pending.appendleft(message)

    def _sleep(self, seconds: float) -> None:
        with self._wake:
            if not self._stop:
                self._wake.wait(timeout=seconds)
