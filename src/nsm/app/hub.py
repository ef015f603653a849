"""`nsm ai hub`: the development hub run until Ctrl-C, printing or recording what workers send."""
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nsm.ai.dev_hub import DevHub


def run_dev_hub(host: str, port: int, namespace: str, token: str | None, record: Path | None,
                show: Callable[[dict], None] | None, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; each update is appended to `record` (JSON lines with its arrival
    time) when given, else handed to `show`."""
    out = record.open("a") if record else None
    lock = threading.Lock()

    def on_update(arrived: float, message: dict) -> None:
        if out is not None:
            with lock:
                out.write(json.dumps({"arrived": arrived, "message": message}) + "\n")
                out.flush()
        elif show is not None:
            show(message)

    hub = DevHub(host, port, namespace, token, on_update=on_update).start()
    on_ready(hub.url)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
        if out is not None:
            out.close()
